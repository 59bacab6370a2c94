'use strict';
// The session manager, written the way a Baileys gateway handles `connection.update`, with the
// design note's fixes (reference/design-note-reconnect-fixes.es.md). Each legacy bug is a
// switch (`config.bugs`) that puts back the note's original code at that one place:
//   connecting_rejected  isSessionActive ignores forReconnect: the reconnect's own `connecting` fails it
//   no_cap               setTimeout(reconnect, 2500) forever: no backoff, no attempt cap
//   stale_cache          the validity cache is not cleared on close
//   no_validation        the timer reconnects without asking whether the session is still valid
//   socket_before_close  the old socket is not ended before startSession opens a new one
const { makeSocket } = require('./wire');
const { TERMINAL_CODES } = require('./config');
const { log } = require('./log');

const LEGACY_RETRY_S = 2.5;

class SessionManager {
  constructor(config, store, queue) {
    this.config = config;
    this.store = store;
    this.queue = queue;
    this.bugs = config.bugs;
    this.sessions = {}; // id -> { sock, reconnectAttempts, reconnecting, timer }
    this.sessionActiveCache = new Map(); // id -> { active, expiresAt }
  }

  scaled(seconds) {
    return seconds * this.config.timeScale * 1000;
  }

  backoffMs(attempt) {
    if (this.bugs.has('no_cap')) return this.scaled(LEGACY_RETRY_S);
    const { base_s: base, factor, cap_s: cap } = this.config.policy;
    return this.scaled(Math.min(base * factor ** (attempt - 1), cap));
  }

  async isSessionActive(sessionId, options = {}) {
    const cached = this.sessionActiveCache.get(sessionId);
    if (cached && cached.expiresAt > Date.now()) return cached.active;
    const forReconnect = options.forReconnect && !this.bugs.has('connecting_rejected');
    let active;
    try {
      const redisStatus = await this.store.getStatus(sessionId);
      if (redisStatus === 'inactive') active = false;
      else if (redisStatus !== null) active = forReconnect ? (redisStatus === 'active' || redisStatus === 'connecting') : redisStatus === 'active';
    } catch (err) {
      log('validity_redis_failed', { session_id: sessionId, error: err.message });
    }
    if (active === undefined) active = await this.queue.validity(sessionId).catch(() => false);
    this.sessionActiveCache.set(sessionId, { active, expiresAt: Date.now() + this.config.cacheTtlMs });
    return active;
  }

  setStatus(sessionId, status, priority = 'normal') {
    this.store.setStatus(sessionId, status);
    this.queue.addStatus(sessionId, status, priority);
  }

  async startSession(sessionId) {
    const previous = this.sessions[sessionId] || { reconnectAttempts: 0, reconnecting: false };
    log('session_starting', { session_id: sessionId, attempt: previous.reconnectAttempts });
    const sock = makeSocket(sessionId, this.config);
    this.sessions[sessionId] = { ...previous, sock, timer: null };
    sock.ev.on('connection.update', (update) => {
      this.onConnectionUpdate(sessionId, sock, update).catch((err) => log('handler_failed', { session_id: sessionId, error: err.message }));
    });
  }

  async onConnectionUpdate(sessionId, sock, { connection, lastDisconnect }) {
    const session = this.sessions[sessionId];
    if (!session || session.sock !== sock) return; // an old socket's news
    log('connection_update', { session_id: sessionId, connection });
    if (connection === 'open') {
      session.reconnectAttempts = 0; // R6: old failures do not count against future drops
      session.reconnecting = false;
      this.sessionActiveCache.set(sessionId, { active: true, expiresAt: Date.now() + this.config.cacheTtlMs });
      log('session_open', { session_id: sessionId });
      this.setStatus(sessionId, 'active');
    } else if (connection === 'close') {
      await this.handleSessionClose(sessionId, lastDisconnect?.error?.output?.statusCode);
    }
  }

  async handleSessionClose(sessionId, statusCode) {
    const session = this.sessions[sessionId];
    if (!this.bugs.has('stale_cache')) this.sessionActiveCache.delete(sessionId); // R3: first thing, any reason
    log('session_closed', { session_id: sessionId, code: statusCode ?? null });
    if (session.reconnecting && session.timer) return; // B4: one reconnect per session
    // a link the library declared lost (408) may still be open: close it now (R7)
    if (!this.bugs.has('socket_before_close')) await session.sock.end().catch(() => {});
    if (TERMINAL_CODES.includes(statusCode)) {
      log('session_terminal', { session_id: sessionId, code: statusCode });
      return this.drop(sessionId, 'high');
    }
    if (!this.bugs.has('no_cap') && session.reconnectAttempts >= this.config.policy.max_attempts) {
      log('max_attempts_reached', { session_id: sessionId, attempt: session.reconnectAttempts });
      return this.drop(sessionId, 'high');
    }
    session.reconnectAttempts += 1;
    session.reconnecting = true;
    const attempt = session.reconnectAttempts;
    const backoffMs = this.backoffMs(attempt);
    this.setStatus(sessionId, 'connecting');
    log('reconnect_scheduled', { session_id: sessionId, attempt, max_attempts: this.config.policy.max_attempts, backoff_ms: backoffMs });
    session.timer = setTimeout(() => {
      session.timer = null;
      this.reconnect(sessionId, attempt).catch((err) => log('reconnect_failed', { session_id: sessionId, attempt, error: err.message }));
    }, backoffMs);
  }

  async reconnect(sessionId, attempt) {
    const session = this.sessions[sessionId];
    if (!session) return;
    log('reconnect_running', { session_id: sessionId, attempt });
    if (!this.bugs.has('no_validation')) {
      const valid = await this.isSessionActive(sessionId, { forReconnect: true }); // R4
      if (!valid) {
        log('reconnect_cancelled', { session_id: sessionId, attempt });
        return this.drop(sessionId, 'high');
      }
    }
    if (!this.bugs.has('socket_before_close')) {
      try {
        await session.sock.end(); // R7: the old socket is closed first, errors ignored
      } catch { /* ignored */ }
    }
    await this.startSession(sessionId);
  }

  async drop(sessionId, priority) {
    const session = this.sessions[sessionId];
    delete this.sessions[sessionId];
    if (session?.timer) clearTimeout(session.timer);
    this.setStatus(sessionId, 'inactive', priority);
    if (session?.sock) await session.sock.end().catch(() => {});
  }

  async startAll() {
    for (const sessionId of this.config.sessions) {
      // a session a crash left `connecting` is resumed (B5): valid for a reconnect
      if (await this.isSessionActive(sessionId, { forReconnect: true })) await this.startSession(sessionId);
      else log('session_skipped', { session_id: sessionId, reason: 'not active' });
    }
  }

  async stopAll() {
    const all = Object.keys(this.sessions);
    await Promise.all(all.map(async (id) => {
      const session = this.sessions[id];
      if (session.timer) clearTimeout(session.timer);
      delete this.sessions[id];
      await session.sock.end().catch(() => {});
    }));
  }
}

module.exports = { SessionManager };
