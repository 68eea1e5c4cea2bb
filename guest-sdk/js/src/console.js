// `console` for engines that have none (QuickJS): log/info/debug go to the
// plugin's stdout, warn/error to its stderr (the host logs both).
import { Writer } from './codec.js';

function show(v, depth = 0) {
  if (typeof v === 'string') return depth === 0 ? v : JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === undefined || typeof v === 'number' || typeof v === 'boolean' || v === null || typeof v === 'symbol') return String(v);
  if (typeof v === 'function') return `[Function ${v.name || 'anonymous'}]`;
  if (v instanceof Error) return v.stack ? `${v.name}: ${v.message}\n${v.stack}` : `${v.name}: ${v.message}`;
  if (v instanceof Uint8Array) return `Uint8Array(${v.length}) [${Array.from(v.subarray(0, 32)).join(', ')}${v.length > 32 ? ', ...' : ''}]`;
  if (depth > 3) return Array.isArray(v) ? '[Array]' : '[Object]';
  if (Array.isArray(v)) return `[ ${v.map((x) => show(x, depth + 1)).join(', ')} ]`;
  if (v instanceof Map) return `Map(${v.size}) { ${Array.from(v, ([k, x]) => `${show(k, depth + 1)} => ${show(x, depth + 1)}`).join(', ')} }`;
  if (v instanceof Set) return `Set(${v.size}) { ${Array.from(v, (x) => show(x, depth + 1)).join(', ')} }`;
  const keys = Object.keys(v);
  return keys.length ? `{ ${keys.map((k) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${show(v[k], depth + 1)}`).join(', ')} }` : '{}';
}

/** The text console.log writes for `args` (without the newline). */
export function format(args) { return args.map((a) => show(a)).join(' '); }

/** Installs `console` writing through `out(bytes)` and `err(bytes)`, unless the engine has one. */
export function installConsole(out, err) {
  if (typeof globalThis.console !== 'undefined') return;
  const writer = (sink) => (...args) => {
    const w = new Writer(256);
    w.string(format(args) + '\n');
    const b = w.buf.subarray(0, w.len);
    for (let i = 0; i < b.length; i += 4096) sink(b.slice(i, Math.min(b.length, i + 4096)));
  };
  const log = writer(out), error = writer(err);
  globalThis.console = { log, info: log, debug: log, trace: log, warn: error, error };
}
