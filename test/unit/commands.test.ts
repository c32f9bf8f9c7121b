import { describe, expect, it } from "vitest";
import {
  editDistance,
  helpText,
  MAX_PARSED_BODY_LENGTH,
  MAX_UNKNOWN_COMMANDS,
  parseCommands,
} from "../../src/domain/commands.js";
import { COMMAND_NAMES, type CommandName } from "../../src/domain/types.js";

const commandsIn = (body: string) => parseCommands(body).commands;
const unknownIn = (body: string) => parseCommands(body).unknown;

describe("parseCommands: where a command may stand", () => {
  it.each(COMMAND_NAMES)("finds /%s alone on a line", (name) => {
    expect(parseCommands(`/${name}`)).toEqual({ commands: [name], unknown: [] });
  });

  it("ignores trailing text after a space or tab", () => {
    expect(commandsIn("/retry please")).toEqual(["retry"]);
    expect(commandsIn("/stop\tnow, it's looping")).toEqual(["stop"]);
    expect(commandsIn("/run   ")).toEqual(["run"]);
  });

  it("is case-insensitive", () => {
    expect(commandsIn("/RETRY\n/Stop\n/aPpRoVe")).toEqual(["retry", "stop", "approve"]);
  });

  it("allows up to three spaces before the slash, not four or a tab", () => {
    expect(commandsIn(" /run\n  /stop\n   /cancel")).toEqual(["run", "stop", "cancel"]);
    expect(commandsIn("    /run")).toEqual([]);
    expect(commandsIn("\t/run")).toEqual([]);
    expect(commandsIn("  \t/run")).toEqual([]);
  });

  it("needs the command at the start of the line", () => {
    expect(commandsIn("please /retry")).toEqual([]);
    expect(commandsIn("- /retry")).toEqual([]);
    expect(commandsIn("**/retry**")).toEqual([]);
  });

  it("needs whitespace or the end of the line after the name", () => {
    expect(commandsIn("/retry/now")).toEqual([]);
    expect(commandsIn("/run.sh")).toEqual([]);
  });

  it("understands LF, CRLF and CR line endings, mixed", () => {
    expect(commandsIn("hi\r\n/retry\r\n")).toEqual(["retry"]);
    expect(commandsIn("hi\r/stop\r")).toEqual(["stop"]);
    expect(commandsIn("a\n/run\r\n/stop\rb")).toEqual(["run", "stop"]);
  });

  it("keeps the order of first appearance, each command once", () => {
    expect(commandsIn("/stop\n/retry\n/STOP\n/retry again\n/help")).toEqual([
      "stop",
      "retry",
      "help",
    ]);
  });

  it("finds a command that continues a paragraph", () => {
    expect(commandsIn("The tests were flaky.\n/retry")).toEqual(["retry"]);
  });

  it("ignores a leading byte order mark", () => {
    expect(commandsIn("\uFEFF/run")).toEqual(["run"]);
  });

  it("finds nothing in empty or blank bodies", () => {
    expect(parseCommands("")).toEqual({ commands: [], unknown: [] });
    expect(parseCommands(" \n\t\r\n")).toEqual({ commands: [], unknown: [] });
  });
});

describe("parseCommands: code is never a command", () => {
  it("ignores fenced code with backticks and tildes", () => {
    expect(commandsIn("```\n/retry\n```\n/stop")).toEqual(["stop"]);
    expect(commandsIn("~~~\n/retry\n~~~\n/stop")).toEqual(["stop"]);
    expect(commandsIn("```sh\n/retry\n```")).toEqual([]);
    expect(commandsIn("   ```\n/retry\n   ```\n/stop")).toEqual(["stop"]);
  });

  it("closes a fence only with the same character, at least as long", () => {
    expect(commandsIn("````\n```\n/retry\n````\n/stop")).toEqual(["stop"]);
    expect(commandsIn("```\n~~~\n/retry\n```\n/stop")).toEqual(["stop"]);
    expect(commandsIn("~~~\n```\n/retry\n~~~\n/stop")).toEqual(["stop"]);
    expect(commandsIn("```\n/retry\n`````\n/stop")).toEqual(["stop"]);
  });

  it("does not close a fence with text after the closing run", () => {
    expect(commandsIn("```\n``` not yet\n/retry\n```\n/stop")).toEqual(["stop"]);
  });

  it("runs an unclosed fence to the end", () => {
    expect(commandsIn("/run\n```\n/retry\n/stop")).toEqual(["run"]);
  });

  it("does not take ``` with a backtick in its info string for a fence", () => {
    expect(commandsIn("``` not ` a fence\n\n/retry")).toEqual(["retry"]);
  });

  it("ignores a fence opened on a list item until the item ends", () => {
    expect(commandsIn("- ```\n  /retry\n  ```\n/stop")).toEqual(["stop"]);
    expect(commandsIn("1. ```\n   /retry\n\n   /run\n/stop")).toEqual(["stop"]);
    expect(commandsIn("- - ```\n    /retry\n    ```\n/stop")).toEqual(["stop"]);
  });

  it("ignores a fence inside a list item, which ends with the item", () => {
    expect(commandsIn("- a\n\n  ```\n  /retry\n  ```\n/stop")).toEqual(["stop"]);
    expect(commandsIn("- a\n\n    ```\n  /retry\n    ```\n/stop")).toEqual(["stop"]);
    expect(commandsIn("- a\n\n  ```\n  /retry\n/stop\n  ```\n/run")).toEqual(["stop"]);
    expect(commandsIn("1. a\n\n   ~~~\n   /retry\n\n   /run\n   ~~~\n/stop")).toEqual(["stop"]);
  });

  it("ignores indented code", () => {
    expect(commandsIn("text\n\n    /retry\n\t/run\n\n/stop")).toEqual(["stop"]);
  });

  it("ignores inline code spans, including ones over several lines", () => {
    expect(commandsIn("`/retry`")).toEqual([]);
    expect(commandsIn("see `this\n/retry\nand that` here\n\n/stop")).toEqual(["stop"]);
    expect(commandsIn("`` a ` b\n/retry\n``\n/stop")).toEqual(["stop"]);
  });

  it("treats an unmatched backtick as text", () => {
    expect(commandsIn("a ` b\n/retry")).toEqual(["retry"]);
    expect(commandsIn("a `` b\n/retry\n` c")).toEqual(["retry"]);
  });

  it("treats an escaped backtick as text", () => {
    expect(commandsIn("a \\` b\n/retry\n` c")).toEqual(["retry"]);
  });

  it("does not let a code span cross a paragraph's end", () => {
    expect(commandsIn("a `\n\n/retry\n\n` b")).toEqual(["retry"]);
    expect(commandsIn("a `\n---\n/retry `")).toEqual(["retry"]);
    expect(commandsIn("a `\n***\n/retry `")).toEqual(["retry"]);
    expect(commandsIn("a `\n- item\n/retry `")).toEqual(["retry"]);
    expect(commandsIn("a `\n```\n```\n/retry `")).toEqual(["retry"]);
    expect(commandsIn("a `\n1. b\n/retry `")).toEqual(["retry"]);
  });

  it("lets a code span run on where CommonMark continues the paragraph", () => {
    // Only a list starting at 1 may interrupt a paragraph; "2." is paragraph text.
    expect(commandsIn("a `\n2. b\n/retry `")).toEqual([]);
    // Indented lines continue a paragraph rather than start indented code.
    expect(commandsIn("a `\n    b\n/retry `")).toEqual([]);
    // Lazy continuation of a list item's paragraph.
    expect(commandsIn("- a `\n/retry `")).toEqual([]);
    expect(commandsIn("a `\n# heading\n/retry\n\nb `")).toEqual(["retry"]);
    expect(commandsIn("a `\n> quote\n/retry\n\nb `")).toEqual(["retry"]);
  });
});

describe("parseCommands: quotes and comments are never commands", () => {
  it("ignores block quotes at any depth", () => {
    expect(commandsIn("> /retry\n/stop")).toEqual(["stop"]);
    expect(commandsIn(">/retry")).toEqual([]);
    expect(commandsIn("> > > /retry")).toEqual([]);
    expect(commandsIn("   > /retry")).toEqual([]);
    expect(commandsIn("> ```\n> /retry\n> ```")).toEqual([]);
  });

  it("takes an unmarked line under a quote as the commenter's own", () => {
    expect(commandsIn("> could you retry?\n/retry")).toEqual(["retry"]);
    expect(commandsIn("> ```\n/retry")).toEqual(["retry"]);
  });

  it("ignores HTML comment blocks", () => {
    expect(commandsIn("<!--\n/retry\n-->\n/stop")).toEqual(["stop"]);
    expect(commandsIn("<!-- /retry -->\n/stop")).toEqual(["stop"]);
    expect(commandsIn("<!-- a\n\n/retry\n\nb -->\n/stop")).toEqual(["stop"]);
    expect(commandsIn("<!--\n/retry\nno end")).toEqual([]);
  });

  it("ignores HTML comments inside a paragraph", () => {
    expect(commandsIn("text <!--\n/retry\n--> more\n/stop")).toEqual(["stop"]);
  });

  it("does not let an unclosed inline comment hide anything", () => {
    expect(commandsIn("text <!--\n/retry")).toEqual(["retry"]);
    expect(commandsIn("a <!--\n\n/retry\n\n-->")).toEqual(["retry"]);
  });
});

describe("parseCommands: unknown commands", () => {
  it.each([
    ["/retyr", "/retyr"],
    ["/stopp", "/stopp"],
    ["/rerty please", "/rerty"],
    ["/stat", "/stat"],
    ["/aprove", "/aprove"],
    ["/Retrying", "/Retrying"],
    ["/runner", "/runner"],
    ["/retry.", "/retry."],
    ["/halp", "/halp"],
  ])("reports %s as %s", (body, token) => {
    expect(parseCommands(body)).toEqual({ commands: [], unknown: [token] });
  });

  it.each([
    "/usr/bin/env",
    "/ 2",
    "/",
    "/etc",
    "/cc @octocat",
    "/lgtm",
    "/shrug",
    "/r",
    "/on",
    "/42",
    "/déployer",
    "/supercalifragilistic",
  ])("does not report %s", (body) => {
    expect(parseCommands(body)).toEqual({ commands: [], unknown: [] });
  });

  it("deduplicates case-insensitively and keeps the first spelling", () => {
    expect(unknownIn("/Retyr\n/retyr\n/RETYR\n/stopp")).toEqual(["/Retyr", "/stopp"]);
  });

  it("reports unknown ones only outside code and quotes", () => {
    expect(unknownIn("```\n/retyr\n```\n> /stopp\n    /halp")).toEqual([]);
  });

  it("caps how many it reports", () => {
    const body = Array.from({ length: 50 }, (_, index) => `/run${index}`).join("\n");
    expect(unknownIn(body)).toHaveLength(MAX_UNKNOWN_COMMANDS);
  });

  it("reports known and unknown together", () => {
    expect(parseCommands("/retry\n/stopp\n/help")).toEqual({
      commands: ["retry", "help"],
      unknown: ["/stopp"],
    });
  });
});

describe("editDistance", () => {
  it.each([
    ["retry", "retry", 0],
    ["retyr", "retry", 1],
    ["stopp", "stop", 1],
    ["rerty", "retry", 1],
    ["", "run", 3],
    ["usr", "run", 3],
    ["kitten", "sitting", 3],
  ])("%s → %s is %i", (a, b, distance) => {
    expect(editDistance(a, b)).toBe(distance);
    expect(editDistance(b, a)).toBe(distance);
  });
});

describe("helpText", () => {
  it("lists every command as a markdown list item with an explanation", () => {
    const text = helpText();
    for (const name of COMMAND_NAMES) {
      expect(text).toMatch(new RegExp(`^- \`/${name}\`: \\S.+$`, "m"));
    }
  });

  it("parses as the help command only where it says so", () => {
    // The help text quotes every command in code spans: replying with it triggers nothing.
    expect(parseCommands(helpText())).toEqual({ commands: [], unknown: [] });
  });
});

// ---------------------------------------------------------------------------------------
// Size and cost
// ---------------------------------------------------------------------------------------

const MIB = 1024 * 1024;
const LINEAR_TIME_BOUND_MS = 5000;

function timed<T>(work: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = work();
  return { value, ms: performance.now() - started };
}

describe("parseCommands: large and pathological bodies", () => {
  const repeatTo = (unit: string, length: number) =>
    unit.repeat(Math.ceil(length / unit.length)).slice(0, length);

  // A quadratic parser needs minutes on any of these; a linear one, well under a second. The
  // bound is loose so that a slow, busy CI machine does not fail it.
  it.each([
    ["one huge line", repeatTo("a", MIB)],
    ["many short lines", repeatTo("/x\n", MIB)],
    [
      "backtick runs of growing length",
      Array.from({ length: 1400 }, (_, i) => "`".repeat(i + 1)).join(" "),
    ],
    ["backticks alternating lengths", repeatTo("` `` ``` a\n", MIB)],
    ["unclosed comment openers", repeatTo("x <!-- ", MIB)],
    ["lines of only backticks", repeatTo("```\n````\n", MIB)],
    ["escapes", repeatTo("\\`", MIB)],
    ["nested quotes", repeatTo("> > > > /retry\n", MIB)],
    ["list markers", repeatTo("- 1. * ", MIB)],
    ["commands", repeatTo("/retry\n/retyr\n", MIB)],
    ["CR only", repeatTo("a`\r", MIB)],
  ])("%s (1 MiB) in linear time", (_name, body) => {
    const { value, ms } = timed(() => parseCommands(body));
    expect(value.commands.length).toBeLessThanOrEqual(COMMAND_NAMES.length);
    expect(ms).toBeLessThan(LINEAR_TIME_BOUND_MS);
  });

  it("reads only the first MAX_PARSED_BODY_LENGTH characters", () => {
    expect(MAX_PARSED_BODY_LENGTH).toBe(MIB);
    const filler = repeatTo("words\n", MAX_PARSED_BODY_LENGTH - 1);
    expect(commandsIn(`${filler}\n/retry`)).toEqual([]);
    expect(commandsIn(`${filler.slice(0, -7)}\n/retry`)).toEqual(["retry"]);
  });
});

// ---------------------------------------------------------------------------------------
// Fuzz: seeded, so a failure reproduces
// ---------------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  private readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }
  int(below: number): number {
    return Math.floor(this.next() * below);
  }
  chance(probability: number): boolean {
    return this.next() < probability;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
}

/** Pieces hostile to a line-based parser; none holds a line break. */
const HOSTILE_PIECES = [
  "`",
  "``",
  "```",
  "````",
  "~~~",
  "~",
  ">",
  "> ",
  "<!--",
  "-->",
  "<!-- x -->",
  "/",
  "/retry",
  "/retyr",
  "/usr/bin",
  "\\",
  "\\`",
  "#",
  "- ",
  "1. ",
  "    ",
  "\t",
  " ",
  "***",
  "---",
  "===",
  "é",
  "ß",
  "İ",
  "\u212a",
  "🚀",
  "👩‍👩‍👧",
  "\u202e",
  "\u200b",
  "\u0000",
  "\ud800",
  "\udc00",
  "\uFEFF",
  "漢字",
  "text",
  "<details>",
  "[link](/retry)",
];

function hostileLine(random: Random, maxPieces = 8): string {
  let line = "";
  const pieces = random.int(maxPieces + 1);
  for (let index = 0; index < pieces; index += 1) line += random.pick(HOSTILE_PIECES);
  return line;
}

function commandToken(random: Random, name: string): string {
  return [...name]
    .map((character) => (random.chance(0.3) ? character.toUpperCase() : character))
    .join("");
}

/** A line that is a command wherever it stands visibly: indent, name, maybe trailing text. */
function commandLine(random: Random, name: CommandName): string {
  const indent = " ".repeat(random.int(4));
  const trailing = random.chance(0.5) ? random.pick([" ", "\t", "  "]) + hostileLine(random) : "";
  return `${indent}/${commandToken(random, name)}${trailing}`;
}

/** Lines that could never, wherever they stand, start a block: "x" goes first. */
function fillerLine(random: Random): string {
  return `x${hostileLine(random)}`;
}

/** Keeps a line inside the paragraph it is in: command lines as they are, others behind "x". */
function asParagraphLine(line: string): string {
  return /^ {0,3}\//.test(line) ? line : `x${line}`;
}

interface Block {
  lines: string[];
  /** Commands this block must yield; hidden blocks yield none. */
  commands: CommandName[];
}

const ALL_COMMANDS = [...COMMAND_NAMES];

/** Content for inside a hidden block: commands, look-alikes, hostile lines, fence-ish lines. */
function innerLines(random: Random): string[] {
  return Array.from({ length: 1 + random.int(6) }, () =>
    random.pick([
      () => commandLine(random, random.pick(ALL_COMMANDS)),
      () => `/${random.pick(["retyr", "stopp", "aprove"])}`,
      () => hostileLine(random),
      () => "",
      () => "`".repeat(1 + random.int(8)),
      () => "~".repeat(1 + random.int(8)),
    ])(),
  );
}

function isFenceCloser(line: string, marker: string, length: number): boolean {
  const match = /^ {0,3}([`~]+)[ \t]*$/.exec(line);
  return match !== null && match[1]?.[0] === marker && (match[1]?.length ?? 0) >= length;
}

const HIDDEN_BLOCKS: ReadonlyArray<(random: Random, last: boolean) => string[]> = [
  // Fenced code, backticks or tildes, any length, holding other fences of either kind.
  (random, last) => {
    const marker = random.pick(["`", "~"]);
    const length = 3 + random.int(4);
    // After a space, so the info string cannot lengthen the fence it follows.
    const info = random.chance(0.5) ? ` ${hostileLine(random, 3).replace(/`/g, "")}` : "";
    const indent = " ".repeat(random.int(4));
    const inside = innerLines(random).filter((line) => !isFenceCloser(line, marker, length));
    const closer = `${" ".repeat(random.int(4))}${marker.repeat(length + random.int(3))}`;
    const unclosed = last && random.chance(0.3);
    return [`${indent}${marker.repeat(length)}${info}`, ...inside, ...(unclosed ? [] : [closer])];
  },
  // Block quotes, nested to any depth, holding anything.
  (random) =>
    innerLines(random).map((line) => {
      const depth = 1 + random.int(4);
      return `${" ".repeat(random.int(4))}${random.pick([">", "> "]).repeat(depth)}${line}`;
    }),
  // Indented code (it follows a blank line, so it is not a paragraph continuation).
  (random) =>
    innerLines(random)
      .filter((line) => line.trim() !== "")
      .map((line) => `${random.pick(["    ", "\t", "  \t", "     "])}${line}`)
      .concat(["    /retry"]),
  // An HTML comment block.
  (random, last) => {
    const inside = innerLines(random).filter((line) => !line.includes("-->"));
    const unclosed = last && random.chance(0.3);
    return ["<!--", ...inside, ...(unclosed ? [] : [`${hostileLine(random, 2)}-->`])];
  },
  // A comment inside a paragraph, over several lines.
  (random) => {
    const inside = innerLines(random).filter((line) => line.trim() !== "" && !line.includes("-->"));
    return ["x <!--", ...inside.map(asParagraphLine), "-->"];
  },
  // A code span over several lines of a paragraph.
  (random) => {
    const ticks = "`".repeat(1 + random.int(3));
    const inside = Array.from({ length: 1 + random.int(3) }, () =>
      random.chance(0.5)
        ? commandLine(random, random.pick(ALL_COMMANDS)).replace(/`/g, "")
        : `x${hostileLine(random).replace(/`/g, "")}`,
    );
    // The closing run must not start its line: three backticks there would open a fence.
    return [`x ${ticks}`, ...inside, `x${ticks} x`];
  },
  // A fence opened on a list item's first line.
  (random) => {
    const marker = random.pick(["- ", "* ", "1. ", "- - "]);
    const fence = random.pick(["```", "~~~~"]);
    const pad = " ".repeat(marker.length);
    const inside = innerLines(random)
      .map((line) => (line === "" ? line : `${pad}${line}`))
      .filter((line) => !isFenceCloser(line.slice(pad.length), fence[0] ?? "`", fence.length));
    // The unindented paragraph after a blank line ends the list, so the next block is not
    // inside the item.
    return [`${marker}${fence}`, ...inside, `${pad}${fence}`, "", "x"];
  },
];

function visibleBlock(random: Random): Block {
  if (random.chance(0.35)) {
    return {
      lines: Array.from({ length: 1 + random.int(3) }, () => fillerLine(random)),
      commands: [],
    };
  }
  const name = random.pick(ALL_COMMANDS);
  // Without backticks or comments, the line before cannot open a span that hides the command.
  const lead = random.chance(0.3) ? [fillerLine(random).replace(/`|<!--/g, "")] : [];
  return { lines: [...lead, commandLine(random, name)], commands: [name] };
}

function document(random: Random): { body: string; expected: CommandName[]; hidden: number } {
  const blocks: Block[] = [];
  const count = 1 + random.int(8);
  let hidden = 0;
  for (let index = 0; index < count; index += 1) {
    const last = index === count - 1;
    if (random.chance(0.5)) {
      blocks.push({ lines: random.pick(HIDDEN_BLOCKS)(random, last), commands: [] });
      hidden += 1;
    } else {
      blocks.push(visibleBlock(random));
    }
  }
  const lines = blocks.flatMap((block, index) =>
    index === 0 ? block.lines : ["", ...block.lines],
  );
  const expected: CommandName[] = [];
  for (const name of blocks.flatMap((block) => block.commands)) {
    if (!expected.includes(name)) expected.push(name);
  }
  return { body: joinLines(random, lines), expected, hidden };
}

/**
 * Joins with LF, CRLF or CR, picked per line; never CR then LF around an empty line, which
 * would read as one CRLF and swallow the blank line that ends a block.
 */
function joinLines(random: Random, lines: string[]): string {
  const style = random.int(4);
  let body = lines[0] ?? "";
  let previous = "";
  for (let index = 1; index < lines.length; index += 1) {
    let ending = ["\n", "\r\n", "\r", random.pick(["\n", "\r\n", "\r"])][style] ?? "\n";
    if (ending === "\n" && previous === "\r" && lines[index - 1] === "") ending = "\r";
    body += ending + lines[index];
    previous = ending;
  }
  return body;
}

describe("parseCommands: fuzz", () => {
  it("never throws on hostile text and always answers in shape", () => {
    const random = new Random(1);
    for (let round = 0; round < 3000; round += 1) {
      const lines = Array.from({ length: random.int(12) }, () => hostileLine(random));
      const body = joinLines(random, lines);
      let result: ReturnType<typeof parseCommands> | undefined;
      expect(() => {
        result = parseCommands(body);
      }, JSON.stringify(body)).not.toThrow();
      if (result === undefined) continue;
      expect(new Set(result.commands).size).toBe(result.commands.length);
      for (const name of result.commands) expect(COMMAND_NAMES).toContain(name);
      expect(result.unknown.length).toBeLessThanOrEqual(MAX_UNKNOWN_COMMANDS);
      for (const token of result.unknown) expect(token).toMatch(/^\/[A-Za-z]/);
    }
  });

  it("never throws on 1 MiB of hostile text", () => {
    for (const seed of [2, 3, 4]) {
      const random = new Random(seed);
      const lines: string[] = [];
      let size = 0;
      while (size < MIB) {
        const line = hostileLine(random, 40);
        lines.push(line);
        size += line.length + 1;
      }
      const { ms } = timed(() => parseCommands(joinLines(random, lines)));
      expect(ms).toBeLessThan(LINEAR_TIME_BOUND_MS);
    }
  });

  it("returns every visible command and none inside code, quotes or comments", () => {
    let hiddenSeen = 0;
    for (let seed = 100; seed < 3100; seed += 1) {
      const random = new Random(seed);
      const { body, expected, hidden } = document(random);
      hiddenSeen += hidden;
      expect(commandsIn(body), `seed ${seed}: ${JSON.stringify(body)}`).toEqual(expected);
    }
    expect(hiddenSeen).toBeGreaterThan(1000);
  });

  it("finds nothing at all when every block is hidden", () => {
    for (let seed = 5000; seed < 6000; seed += 1) {
      const random = new Random(seed);
      const count = 1 + random.int(5);
      const lines = Array.from({ length: count }, (_, index) =>
        random.pick(HIDDEN_BLOCKS)(random, index === count - 1),
      ).flatMap((block, index) => (index === 0 ? block : ["", ...block]));
      const body = joinLines(random, lines);
      expect(parseCommands(body), `seed ${seed}: ${JSON.stringify(body)}`).toEqual({
        commands: [],
        unknown: [],
      });
    }
  });

  it("still finds a command placed after hidden blocks in a 1 MiB body", () => {
    const random = new Random(7);
    const lines: string[] = [];
    let size = 0;
    while (size < MIB - 4096) {
      const block = ["", ...random.pick(HIDDEN_BLOCKS)(random, false)];
      lines.push(...block);
      for (const line of block) size += line.length + 2;
    }
    const body = joinLines(random, [...lines, "", "/approve"]);
    expect(body.length).toBeLessThan(MAX_PARSED_BODY_LENGTH);
    expect(commandsIn(body)).toEqual(["approve"]);
  });
});
