// Summarises a V8 .cpuprofile (node --cpu-prof): where the main thread's time went, by module and by
// function (self time), plus the inclusive time of named functions.
//
//   node bench/cpu-profile-summary.mjs <file.cpuprofile> [top=25] [inclusive-name ...]
//
// Only the JS main thread is profiled: libuv thread-pool work (fs writes, fsync) and kernel time
// appear as (idle) here unless the main thread waited on them synchronously.
import fs from 'node:fs';
import path from 'node:path';

function moduleOf(url, functionName) {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  if (url.startsWith('node:')) return url;
  const dist = /\/dist\/(.*)$/.exec(url);
  if (dist) return `filestore ${dist[1]}`;
  return path.basename(url);
}

export function summarize(file, { top = 25, inclusiveNames = [] } = {}) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map();
  for (let i = 0; i < profile.samples.length; i += 1) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const totalUs = profile.endTime - profile.startTime;
  const label = (node) => {
    const { functionName, url, lineNumber } = node.callFrame;
    return `${functionName || '(anonymous)'} ${url ? `${path.basename(url)}:${lineNumber + 1}` : ''}`.trim();
  };
  const fnSelf = new Map();
  const modSelf = new Map();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    fnSelf.set(label(node), (fnSelf.get(label(node)) ?? 0) + us);
    const mod = moduleOf(node.callFrame.url, node.callFrame.functionName);
    modSelf.set(mod, (modSelf.get(mod) ?? 0) + us);
  }
  // inclusive time of functions whose name matches, counted once per stack
  const inclusive = new Map(inclusiveNames.map((n) => [n, 0]));
  if (inclusiveNames.length > 0) {
    const parent = new Map();
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
    for (const [id, us] of selfUs) {
      const seen = new Set();
      for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
        const name = byId.get(cur).callFrame.functionName;
        for (const wanted of inclusiveNames) if (name === wanted) seen.add(wanted);
      }
      for (const name of seen) inclusive.set(name, inclusive.get(name) + us);
    }
  }
  const ms = (us) => (us / 1000).toFixed(0).padStart(8);
  const pct = (us) => `${((100 * us) / totalUs).toFixed(1).padStart(5)}%`;
  const lines = [`${path.basename(file)}: ${(totalUs / 1e6).toFixed(2)} s profiled (main thread)`, '', 'self time by module:'];
  for (const [mod, us] of [...modSelf].sort((a, b) => b[1] - a[1]).slice(0, 15)) lines.push(`${ms(us)} ms ${pct(us)}  ${mod}`);
  lines.push('', `self time by function (top ${top}):`);
  for (const [fn, us] of [...fnSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`${ms(us)} ms ${pct(us)}  ${fn}`);
  if (inclusiveNames.length > 0) {
    lines.push('', 'inclusive time:');
    for (const [name, us] of inclusive) lines.push(`${ms(us)} ms ${pct(us)}  ${name}`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, top, ...names] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node bench/cpu-profile-summary.mjs <file.cpuprofile> [top] [function names for inclusive time]\n');
    process.exit(2);
  }
  process.stdout.write(`${summarize(file, { top: Number(top ?? 25), inclusiveNames: names })}\n`);
}
