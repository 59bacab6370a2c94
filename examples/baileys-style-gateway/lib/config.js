'use strict';
// Settings from the environment the chaos harness sets (chaos/CONTRACT.md): endpoints, sessions,
// the reconnect policy (the note's defaults), the time scale and the mode. Validated once at
// start; a bad value throws a ConfigError naming the variable (the entry point exits 2).
const fs = require('node:fs');

const BUGS = Object.freeze({
  connecting_rejected: "a reconnect is rejected by its own 'connecting' status (validity ignores forReconnect)",
  no_cap: 'a fixed 2.5 s retry with no attempt cap',
  stale_cache: 'the validity cache is kept across closes',
  no_validation: 'no validation before reconnecting',
  socket_before_close: 'a new socket is opened before the old one is closed',
});

// The note's policy, at real timings (seconds); POLICY may override any of these keys.
const DEFAULT_POLICY = Object.freeze({
  base_s: 2, factor: 2, cap_s: 32, max_attempts: 5,
  connect_timeout_s: 20, keepalive_interval_s: 20, keepalive_misses: 3,
});
const ACCEPTED_AS_IS = Object.freeze({ jitter: ['none'], codes: ['original'] });
const TERMINAL_CODES = Object.freeze([401, 405, 428]); // the note's table `original`

class ConfigError extends Error {}

function required(env, name) {
  const value = env[name];
  if (value === undefined || value === '') throw new ConfigError(`${name} is required`);
  return value;
}

function url(env, name, schemes) {
  const value = required(env, name).replace(/\/+$/, '');
  if (!schemes.some((s) => value.startsWith(s))) {
    throw new ConfigError(`${name} must start with ${schemes.join(' or ')}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function number(name, value, { min = 0, integer = false } = {}) {
  const ok = typeof value === 'number' && Number.isFinite(value) && value > min && (!integer || Number.isInteger(value));
  if (!ok) throw new ConfigError(`${name} must be ${integer ? 'a whole number' : 'a number'} > ${min}, got ${JSON.stringify(value)}`);
  return value;
}

function parsePolicy(text) {
  let given;
  try {
    given = text ? JSON.parse(text) : {};
  } catch (err) {
    throw new ConfigError(`POLICY is not JSON: ${err.message}`);
  }
  if (given === null || typeof given !== 'object' || Array.isArray(given)) throw new ConfigError('POLICY must be a JSON object');
  const policy = { ...DEFAULT_POLICY };
  for (const [key, value] of Object.entries(given)) {
    if (key in ACCEPTED_AS_IS) {
      if (!ACCEPTED_AS_IS[key].includes(value)) throw new ConfigError(`POLICY.${key}: only ${ACCEPTED_AS_IS[key]} is supported, got ${JSON.stringify(value)}`);
      continue;
    }
    if (!(key in DEFAULT_POLICY)) throw new ConfigError(`POLICY.${key}: unsupported key; known: ${Object.keys(DEFAULT_POLICY).join(', ')}`);
    policy[key] = number(`POLICY.${key}`, value, { integer: key === 'max_attempts' || key === 'keepalive_misses' });
  }
  if (policy.factor < 1) throw new ConfigError(`POLICY.factor must be >= 1, got ${policy.factor}`);
  if (policy.cap_s < policy.base_s) throw new ConfigError(`POLICY.cap_s (${policy.cap_s}) must be >= base_s (${policy.base_s})`);
  return policy;
}

function parseSessions(env) {
  let text = env.SESSIONS;
  if (!text && env.SESSIONS_FILE) {
    try {
      text = fs.readFileSync(env.SESSIONS_FILE, 'utf8').split('\n').join(',');
    } catch (err) {
      throw new ConfigError(`SESSIONS_FILE ${JSON.stringify(env.SESSIONS_FILE)} cannot be read: ${err.code}`);
    }
  }
  const ids = (text || '').split(',').map((s) => s.trim()).filter(Boolean);
  if (ids.length === 0) throw new ConfigError('give SESSIONS (comma-separated ids) or SESSIONS_FILE (one id per line)');
  return [...new Set(ids)];
}

function parseBugs(env) {
  const mode = env.GATEWAY_MODE || 'fixed';
  if (mode !== 'fixed' && mode !== 'legacy') throw new ConfigError(`GATEWAY_MODE must be fixed or legacy, got ${JSON.stringify(mode)}`);
  const named = (env.GATEWAY_BUGS || '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const bug of named) {
    if (!(bug in BUGS)) throw new ConfigError(`GATEWAY_BUGS: unknown bug ${JSON.stringify(bug)}; known: ${Object.keys(BUGS).join(', ')}`);
  }
  return new Set(mode === 'legacy' ? Object.keys(BUGS) : named);
}

function loadConfig(env = process.env) {
  const timeScale = number('TIME_SCALE', Number(env.TIME_SCALE || '1'));
  const healthPort = Number(env.HEALTH_PORT || '0');
  if (!Number.isInteger(healthPort) || healthPort < 0 || healthPort > 65535) throw new ConfigError(`HEALTH_PORT must be a port number, got ${JSON.stringify(env.HEALTH_PORT)}`);
  return Object.freeze({
    whatsappUrl: url(env, 'WHATSAPP_URL', ['ws://', 'wss://']),
    redisUrl: url(env, 'REDIS_URL', ['redis://', 'rediss://']),
    backofficeUrl: url(env, 'BACKOFFICE_URL', ['http://', 'https://']),
    backofficeToken: required(env, 'BACKOFFICE_TOKEN'),
    statusKeyTemplate: env.STATUS_KEY || 'wa:session:{session_id}:status',
    seqKeyTemplate: env.SEQ_KEY || 'wa:session:{session_id}:seq',
    sessions: parseSessions(env),
    policy: Object.freeze(parsePolicy(env.POLICY)),
    timeScale,
    healthPort,
    bugs: parseBugs(env),
    cacheTtlMs: 30000 * timeScale,
  });
}

module.exports = { BUGS, ConfigError, DEFAULT_POLICY, TERMINAL_CODES, loadConfig };
