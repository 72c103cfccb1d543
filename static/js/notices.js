// The notice line: one message at a time, owned by the event that raised it; it goes away
// after a while, or as soon as another event (a new run, another change) replaces it.

const SHOW_MS = { info: 8000, error: 15000 };

export class Notices {
  constructor(el) {
    this.el = el;
    this.timer = null;
  }

  show(text, kind = "info") {
    clearTimeout(this.timer);
    this.el.textContent = text;
    this.el.dataset.kind = kind;
    this.el.hidden = false;
    this.timer = setTimeout(() => this.clear(), SHOW_MS[kind] ?? SHOW_MS.info);
  }

  clear() {
    clearTimeout(this.timer);
    this.el.hidden = true;
    this.el.textContent = "";
  }
}
