// Fake Hugging Face Hub for tests: see README.md in this folder.
export { type Fault, type FaultRule, mulberry32 } from "./faults.js";
export {
  type FakeCommit,
  type FakeFile,
  type FakeRepo,
  fileFromBuffer,
  fileFromDisk,
  gitBlobSha1,
  lfsPointer,
  makeCommitSha,
  makeRepo,
  pushCommit,
  type RepoType,
  randomBytesSeeded,
  sha1Hex,
  sha256Hex,
  TEST_TOKEN,
  writeSeededFile,
} from "./model.js";
export { parseRange, type RequestLogEntry } from "./respond.js";
export { type FakeHub, type StartOptions, startFakeHub } from "./server.js";
