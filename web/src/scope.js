// The lifetime of a view or dialog: every timer, stream and listener it starts is registered
// here and stopped by dispose(), so leaving a view leaves nothing running.
export class Scope {
  constructor() {
    this.controller = new AbortController();
    this.cleanups = [];
  }

  get signal() {
    return this.controller.signal;
  }

  every(ms, fn) {
    const id = setInterval(fn, ms);
    this.cleanups.push(() => clearInterval(id));
  }

  after(ms, fn) {
    const id = setTimeout(fn, ms);
    this.cleanups.push(() => clearTimeout(id));
  }

  onDispose(fn) {
    this.cleanups.push(fn);
  }

  // A scope that ends with this one, or earlier on its own.
  child() {
    const child = new Scope();
    const end = () => child.dispose();
    this.cleanups.push(end);
    child.onDispose(() => {
      const i = this.cleanups.indexOf(end);
      if (i >= 0) this.cleanups.splice(i, 1);
    });
    return child;
  }

  dispose() {
    if (this.signal.aborted) return;
    this.controller.abort();
    for (const fn of this.cleanups.splice(0)) fn();
  }
}
