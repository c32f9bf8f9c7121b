import nock from "nock";

// Only GitHub's API is mocked; anything else off this machine is a bug in the test.
nock.disableNetConnect();
nock.enableNetConnect(/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/);
