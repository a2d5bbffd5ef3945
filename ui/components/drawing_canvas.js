// A drawing canvas for the classify page (ui/drawing.py), a Streamlit components v2 module.
//
// data: {side, load: {id, strokes}}. The canvas has its own square coordinates, 0 … side, whatever
// its size on the screen; a stroke is {w: brush width, p: [x0, y0, x1, y1, …]} in them (whole numbers,
// a point kept only when the pointer moved 2 units since the last one: a few kilobytes per drawing).
//
// - Pointer events: a mouse, a pen or a finger draws (touch-action: none, so a finger does not scroll
//   the page); the pointer is captured, so a stroke that leaves the canvas still ends.
// - At each stroke's end (and after Undo or Clear) all strokes go to Python with setStateValue("strokes"):
//   one fragment rerun, which classifies the drawing. After SETTLE_MS without a new stroke (at once after
//   Clear), setTriggerValue("settled") asks Python to bring the rest of the page up to date (one full rerun).
// - Undo takes back the last stroke, or the last Clear.
// - Python loads strokes into the canvas with `load` ({id, strokes}), applied once per new id: when the
//   canvas is mounted again (after another image source was shown), so a drawing survives.
//
// Lifecycle (components v2): the default export may be called again on the same element, and only the
// last cleanup runs, on unmount: one instance per parentElement (a WeakMap), updated in place.

const MIN_STEP = 2; // canvas units between two kept points
const SETTLE_MS = 900;
const MAX_POINTS = 20000; // Python refuses more; past this a stroke simply stops growing

const registry = (window.__cnnvizDrawing ??= { byRoot: new WeakMap() });

function mount(parentElement) {
  const box = parentElement.querySelector("[data-part=pad]");
  const canvas = box.querySelector("canvas");
  const instance = {
    root: parentElement, box, canvas, ctx: canvas.getContext("2d"),
    side: 280, strokes: [], history: [], current: null, brush: 20, points: 0,
    loadId: null, settle: null, setStateValue: null, setTriggerValue: null, observer: null, listeners: [],
  };
  const on = (target, type, handler, options) => {
    target.addEventListener(type, handler, options);
    instance.listeners.push(() => target.removeEventListener(type, handler, options));
  };
  on(canvas, "pointerdown", (event) => start(instance, event));
  on(canvas, "pointermove", (event) => move(instance, event));
  on(canvas, "pointerup", (event) => end(instance, event));
  on(canvas, "pointercancel", (event) => end(instance, event));
  on(canvas, "lostpointercapture", (event) => end(instance, event));
  on(canvas, "contextmenu", (event) => event.preventDefault());
  on(box, "click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.act === "undo") undo(instance);
    else if (button.dataset.act === "clear") clear(instance);
    else if (button.dataset.brush) {
      instance.brush = Number(button.dataset.brush);
      renderTools(instance);
    }
  });
  instance.observer = new ResizeObserver(() => resize(instance));
  instance.observer.observe(canvas);
  return instance;
}

function destroy(instance) {
  clearTimeout(instance.settle);
  instance.observer?.disconnect();
  instance.listeners.forEach((remove) => remove());
  instance.listeners = [];
  registry.byRoot.delete(instance.root);
}

// ------------------------------------------------------------------ drawing

function toCanvas(instance, event) {
  const rect = instance.canvas.getBoundingClientRect();
  const scale = instance.side / (rect.width || 1);
  const clamp = (v) => Math.min(Math.max(Math.round(v * scale), 0), instance.side);
  return [clamp(event.clientX - rect.left), clamp(event.clientY - rect.top)];
}

function start(instance, event) {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  event.preventDefault();
  instance.canvas.setPointerCapture?.(event.pointerId);
  clearTimeout(instance.settle); // drawing again: the page catches up after this stroke
  const [x, y] = toCanvas(instance, event);
  instance.current = { w: instance.brush, p: [x, y], pointerId: event.pointerId };
  instance.points += 1;
  paint(instance);
}

function move(instance, event) {
  const stroke = instance.current;
  if (!stroke || event.pointerId !== stroke.pointerId) return;
  event.preventDefault();
  const events = event.getCoalescedEvents?.() ?? [event];
  for (const e of events.length ? events : [event]) {
    const [x, y] = toCanvas(instance, e);
    const n = stroke.p.length;
    if (Math.hypot(x - stroke.p[n - 2], y - stroke.p[n - 1]) < MIN_STEP || instance.points >= MAX_POINTS) continue;
    stroke.p.push(x, y);
    instance.points += 1;
  }
  paint(instance);
}

function end(instance, event) {
  const stroke = instance.current;
  if (!stroke || event.pointerId !== stroke.pointerId) return;
  instance.current = null;
  instance.strokes.push({ w: stroke.w, p: stroke.p });
  instance.history.push({ kind: "stroke" });
  paint(instance);
  send(instance);
}

function undo(instance) {
  const last = instance.history.pop();
  if (!last) return;
  if (last.kind === "clear") instance.strokes = last.strokes;
  else instance.strokes.pop();
  changed(instance);
}

function clear(instance) {
  if (!instance.strokes.length) return;
  instance.history.push({ kind: "clear", strokes: instance.strokes });
  instance.strokes = [];
  changed(instance, 0); // nothing left to draw on: the page empties at once
}

function changed(instance, settleMs = SETTLE_MS) {
  instance.points = instance.strokes.reduce((n, s) => n + s.p.length / 2, 0);
  paint(instance);
  send(instance, settleMs);
}

// ------------------------------------------------------------------ to Python

function send(instance, settleMs = SETTLE_MS) {
  const strokes = instance.strokes.map((s) => ({ w: s.w, p: s.p.slice() }));
  registry.lastSent = strokes; // what Python was told last (the browser test computes its expectation from it)
  instance.setStateValue?.("strokes", strokes);
  clearTimeout(instance.settle);
  instance.settle = setTimeout(() => {
    instance.settle = null;
    if (!instance.current) instance.setTriggerValue?.("settled", true);
  }, settleMs);
  renderTools(instance);
}

// ------------------------------------------------------------------ painting

function resize(instance) {
  const width = instance.canvas.clientWidth;
  if (!width) return;
  const pixels = Math.round(width * (window.devicePixelRatio || 1));
  if (instance.canvas.width !== pixels) {
    instance.canvas.width = pixels;
    instance.canvas.height = pixels;
  }
  paint(instance);
}

function paint(instance) {
  const { ctx, canvas } = instance;
  const scale = canvas.width / instance.side;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.fillStyle = ctx.strokeStyle = "#000";
  ctx.lineCap = ctx.lineJoin = "round";
  const strokes = instance.current ? [...instance.strokes, instance.current] : instance.strokes;
  for (const { w, p } of strokes) {
    if (p.length === 2) { // a dot
      ctx.beginPath();
      ctx.arc(p[0], p[1], w / 2, 0, 2 * Math.PI);
      ctx.fill();
      continue;
    }
    ctx.lineWidth = w;
    ctx.beginPath();
    ctx.moveTo(p[0], p[1]);
    for (let i = 2; i < p.length; i += 2) ctx.lineTo(p[i], p[i + 1]);
    ctx.stroke();
  }
  instance.canvas.dataset.strokes = String(instance.strokes.length); // for tests and screen readers' tools
}

function renderTools(instance) {
  instance.box.querySelector("[data-act=undo]").disabled = !instance.history.length;
  instance.box.querySelector("[data-act=clear]").disabled = !instance.strokes.length;
  for (const button of instance.box.querySelectorAll("[data-brush]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.brush) === instance.brush));
  }
}

function loadStrokes(strokes) {
  if (!Array.isArray(strokes)) return [];
  return strokes
    .filter((s) => s && Number.isFinite(s.w) && Array.isArray(s.p) && s.p.length >= 2 && s.p.length % 2 === 0)
    .map((s) => ({ w: s.w, p: s.p.filter(Number.isFinite) }));
}

export default function drawingCanvas({ data, parentElement, setStateValue, setTriggerValue }) {
  let instance = registry.byRoot.get(parentElement);
  if (instance && !instance.box.isConnected) { // new markup (html/css changed): start over
    destroy(instance);
    instance = undefined;
  }
  if (!instance) {
    instance = mount(parentElement);
    registry.byRoot.set(parentElement, instance);
  }
  instance.setStateValue = setStateValue; // the latest carry the current fragment id
  instance.setTriggerValue = setTriggerValue;
  instance.side = Number(data?.side) || 280;
  const load = data?.load;
  if (load && load.id !== instance.loadId) { // Python's strokes: the drawing as this session left it
    instance.loadId = load.id;
    instance.strokes = loadStrokes(load.strokes);
    instance.history = [];
    instance.current = null;
    instance.points = instance.strokes.reduce((n, s) => n + s.p.length / 2, 0);
  }
  resize(instance);
  paint(instance);
  renderTools(instance);
  return () => destroy(instance);
}
