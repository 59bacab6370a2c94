'use strict';
// The note's `batchQueueManager.addStatus(id, status, priority)`: updates for the back office
// kept in order until it acknowledges them (POST /api/status/batch, bearer token), flushed every
// 100 ms or at once for `high`, retried with capped backoff while it is down or answers garbage.
// Each update gets its per-session `seq` from Redis when it is first sent (in queue order), once:
// a lost reply retried asks again for the same update id and gets the same seq.
const crypto = require('node:crypto');
const { log } = require('./log');
const { sleep } = require('./store');

const FLUSH_MS = 100;
const BATCH_SIZE = 200;
const TIMEOUT_MS = 2000;

class BatchQueue {
  constructor({ backofficeUrl, backofficeToken }, store) {
    this.url = `${backofficeUrl}/api/status/batch`;
    this.token = backofficeToken;
    this.store = store;
    this.pending = [];
    this.wake = null;
    this.stopped = false;
    this.loop = this.run();
  }

  addStatus(sessionId, status, priority = 'normal') {
    this.pending.push({ update_id: crypto.randomUUID(), session_id: sessionId, status, priority, seq: null, at_s: Date.now() / 1000 });
    if (priority === 'high' && this.wake) this.wake();
  }

  async run() {
    let retryMs = 50;
    while (!this.stopped) {
      await new Promise((resolve) => { this.wake = resolve; setTimeout(resolve, FLUSH_MS); });
      while (this.pending.length > 0 && !this.stopped) {
        const ok = await this.flush(this.pending.slice(0, BATCH_SIZE));
        if (ok) { retryMs = 50; continue; }
        await sleep(retryMs);
        retryMs = Math.min(retryMs * 2, 1000);
      }
    }
  }

  async flush(batch) {
    try {
      for (const update of batch) {
        if (update.seq === null) update.seq = await this.store.seqFor(update.session_id, update.update_id);
      }
      const reply = await fetch(this.url, {
        method: 'POST', body: JSON.stringify({ updates: batch }), signal: AbortSignal.timeout(TIMEOUT_MS),
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
      });
      if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
      const body = await reply.json();
      if (!body || !Array.isArray(body.acked)) throw new Error('reply without an acked list');
      const acked = new Set(body.acked);
      this.pending = this.pending.filter((u) => !acked.has(u.update_id));
      return true;
    } catch (err) {
      log('backoffice_batch_failed', { updates: batch.length, error: err.message });
      return false;
    }
  }

  async validity(sessionId) {
    const reply = await fetch(`${this.url.replace('/api/status/batch', '')}/api/sessions/${encodeURIComponent(sessionId)}/validity`, {
      headers: { authorization: `Bearer ${this.token}` }, signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    if (reply.status === 404) return false;
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    const body = await reply.json();
    if (!body || typeof body.valid !== 'boolean') throw new Error('validity reply without a boolean `valid`');
    return body.valid;
  }

  async stop() {
    this.stopped = true;
    if (this.wake) this.wake();
    await this.loop;
  }
}

module.exports = { BatchQueue };
