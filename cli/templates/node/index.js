// {{NAME}}: a module written against @pm2/io, as for PM2. Install it with
//   agentctl install .        (development mode: restarts when you edit a file)
const io = require('@pm2/io');

// Defaults come from package.json "config"; `agentctl set {{NAME}}:greeting hi` overrides.
const conf = io.initModule({
  widget: {
    type: 'generic',
    theme: ['#1d3b53', '#0f2436', 'white', 'white'],
    block: { actions: true, issues: true, cpu: true, mem: true, main_probes: ['ticks'] },
  },
});

let ticks = 0;
io.metric({ name: 'ticks', value: () => ticks });
const latency = io.metric({ name: 'latency', unit: 'ms' });

setInterval(() => {
  ticks++;
  latency.set(Math.round(Math.random() * 100) / 10);
}, Number(conf.interval));

// agentctl action {{NAME}} greet --param name=you
io.action('greet', (opts, reply) => {
  reply(`${conf.greeting}, ${(opts && opts.name) || 'stranger'}`);
});

io.notifyError(new Error('{{NAME}} started: this is how an issue looks'));
