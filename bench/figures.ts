/**
 * How a benchmark hands its headline figures to run-all.ts: one JSON line per figure,
 * appended to the file OVERSEER_BENCH_FIGURES names (run-all sets it). Run alone, a
 * benchmark prints its own detail and the figures go nowhere else. Not a benchmark itself.
 */
import { appendFileSync } from "node:fs";

export interface Figure {
  /** What was measured, e.g. "webhook ack p99 at 200/s". */
  figure: string;
  value: number;
  unit: string;
  /** The reference measured in the same run, in the same unit; omitted when there is none. */
  reference?: number;
  /** What the reference is, e.g. "bare Probot app". */
  referenceName?: string;
  /** value / reference unless given (e.g. a rate where higher is better is still value / reference). */
  ratio?: number;
  /** The target in words, e.g. "≤ 1.5× reference". */
  target?: string;
  /** Whether the target was met; undefined when there is no target. */
  met?: boolean;
}

export const FIGURES_FILE_ENV = "OVERSEER_BENCH_FIGURES";

export function reportFigure(figure: Figure): void {
  const file = process.env[FIGURES_FILE_ENV];
  const ratio =
    figure.ratio ??
    (figure.reference !== undefined && figure.reference !== 0
      ? figure.value / figure.reference
      : undefined);
  const complete = { ...figure, ratio };
  if (file) appendFileSync(file, `${JSON.stringify(complete)}\n`);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
