import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectionRamp } from "../src/fetch/ramp.js";

/** Feeds the ramp `seconds` of traffic where each allowed connection carries `perConn(n)` bytes/ms. */
function drive(
  ramp: ConnectionRamp,
  perConn: (n: number) => number,
  seconds: number,
  running = (a: number) => a,
): number[] {
  const levels: number[] = [];
  for (let t = 0; t < seconds * 1000; t += 10) {
    const n = ramp.allowed;
    ramp.record(perConn(n) * n * 10, running(n), t);
    if (levels.at(-1) !== ramp.allowed) levels.push(ramp.allowed);
  }
  return levels;
}

const opts = { initial: 4, max: 32, windowMs: 400, minGain: 0.15 };

describe("connection ramp", () => {
  it("doubles up to the budget while each connection adds throughput (a capped CDN)", () => {
    const ramp = new ConnectionRamp(opts, 0);
    const levels = drive(ramp, () => 10_000, 3);
    assert.deepEqual(levels, [4, 8, 16, 32]);
    assert.ok(ramp.settled);
  });

  it("stops when doubling no longer pays (a server that is already saturated)", () => {
    const ramp = new ConnectionRamp(opts, 0);
    // Total throughput is flat at 500 MB/s whatever the number of connections.
    const levels = drive(ramp, (n) => 500_000 / n, 3);
    assert.deepEqual(levels, [4, 8]);
    assert.ok(ramp.settled);
  });

  it("does not grow while the file is not using all it may (nothing to learn)", () => {
    const ramp = new ConnectionRamp(opts, 0);
    const levels = drive(
      ramp,
      () => 10_000,
      3,
      () => 2,
    );
    assert.deepEqual(levels, [4]);
    assert.ok(!ramp.settled);
  });

  it("never exceeds a small budget", () => {
    const ramp = new ConnectionRamp({ ...opts, max: 2 }, 0);
    assert.equal(ramp.allowed, 2);
    assert.ok(ramp.settled);
    assert.equal(ramp.record(1e9, 2, 10_000), false);
  });
});
