'use strict';
// Entry point: `node gateway.js`, configured by the environment the reconnect-lab chaos harness
// sets from gateway.toml (chaos/CONTRACT.md). Serves GET /healthz on 127.0.0.1:HEALTH_PORT once
// every session has started; stops on SIGTERM/SIGINT. Exit 2 with one line on a bad setting.
const http = require('node:http');
const { ConfigError, loadConfig } = require('./lib/config');
const { Store } = require('./lib/store');
const { BatchQueue } = require('./lib/batchQueue');
const { SessionManager } = require('./lib/sessions');
const { log } = require('./lib/log');

async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(2);
  }
  const store = new Store(config);
  const queue = new BatchQueue(config, store);
  const manager = new SessionManager(config, store, queue);
  let started = false;
  const health = http.createServer((req, res) => {
    res.writeHead(started ? 200 : 503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: started, sessions: Object.keys(manager.sessions).length }));
  });
  health.listen(config.healthPort, '127.0.0.1');
  log('gateway_starting', { sessions: config.sessions.length, bugs: [...config.bugs], time_scale: config.timeScale });
  await store.ready();
  await manager.startAll();
  started = true;
  const stop = async () => {
    log('gateway_stopping', {});
    await manager.stopAll();
    await queue.stop();
    await store.close();
    health.close();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  log('gateway_failed', { error: err.message });
  process.exit(1);
});
