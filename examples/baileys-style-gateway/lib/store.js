'use strict';
// The note's `cacheManager`: each session's status in Redis (shared with the back office, which
// writes `inactive` when it deletes an account) and the per-session `seq` of back-office updates.
// Commands fail fast while Redis is away (no offline queue, a command timeout), so a caller can
// fall back to the back office; status writes are retried until they land, the latest one winning.
const Redis = require('ioredis');
const { log } = require('./log');

const RETRY_MIN_MS = 50;
// One seq per update id: a retry after a lost reply gets the seq it already has (no gap).
const SEQ_SCRIPT = `
local got = redis.call('GET', KEYS[2])
if got then return tonumber(got) end
local seq = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], seq, 'EX', 86400)
return seq`;
const RETRY_MAX_MS = 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Store {
  constructor({ redisUrl, statusKeyTemplate, seqKeyTemplate }) {
    this.redis = new Redis(redisUrl, {
      enableOfflineQueue: false, commandTimeout: 500, connectTimeout: 500, maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(50 * times, 500),
    });
    this.redis.on('error', () => {}); // reconnects on its own; commands report their own failures
    this.statusKey = (id) => statusKeyTemplate.replace('{session_id}', id);
    this.seqKey = (id) => seqKeyTemplate.replace('{session_id}', id);
    this.redis.defineCommand('seqFor', { numberOfKeys: 2, lua: SEQ_SCRIPT });
    this.wanted = new Map(); // session id -> the status still to write
    this.writers = new Map(); // session id -> the running write loop
  }

  async ready() {
    const deadline = Date.now() + 10000;
    while (this.redis.status !== 'ready') {
      if (Date.now() > deadline) throw new Error('Redis did not answer within 10 s');
      await sleep(20);
    }
  }

  async getStatus(id) {
    return this.redis.get(this.statusKey(id)); // throws while Redis is away
  }

  setStatus(id, status) {
    this.wanted.set(id, status);
    if (!this.writers.has(id)) {
      const loop = this.writeLoop(id).finally(() => this.writers.delete(id));
      this.writers.set(id, loop);
    }
    return this.writers.get(id);
  }

  async writeLoop(id) {
    let delayMs = RETRY_MIN_MS;
    while (this.wanted.has(id)) {
      const status = this.wanted.get(id);
      try {
        await this.redis.set(this.statusKey(id), status);
        if (this.wanted.get(id) === status) this.wanted.delete(id);
        delayMs = RETRY_MIN_MS;
      } catch (err) {
        log('status_write_failed', { session_id: id, status, error: err.message });
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
      }
    }
  }

  async seqFor(id, updateId) {
    return this.redis.seqFor(this.seqKey(id), `${this.seqKey(id)}:${updateId}`); // throws while Redis is away
  }

  async close() {
    this.redis.disconnect();
  }
}

module.exports = { Store, sleep };
