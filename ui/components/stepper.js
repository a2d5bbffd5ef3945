// The labs' stepper (ui/client_stepper.py): a convolution or pooling layer, window by window, in
// the browser, with no script rerun per step.
//
// Python (cnnviz/stepping.py) computed everything shown for every step: the grids' labels and
// colours, the windows, the captions, the products, sums and totals, the pooled values. This
// script only places those strings and colours (textContent, never innerHTML: grid numbers are
// typed by users) and joins a channel's product terms with " + ".
//
// The step lives here. It goes
// - into the URL (?<param>=N, history.replaceState, 120 ms after the last move), so a copied link
//   or a reload opens it;
// - to Python, 400 ms after the last move (setStateValue "step", with the id of the last command
//   from Python it has seen, "goto"): one rerun of the stepper's fragment per burst of steps;
// - to the rest of the page: "cnnviz:stepped" {key, param, step, steps} on window whenever it
//   changes, and "cnnviz:edge" {key, direction} when → is pressed at the last step or ← at the first.
// A window event "cnnviz:goto" {key?, step} moves it (every stepper when key is absent), and so
// does Python's command data.goto {id, step} when its id is new (a changed setting resets the step).
//
// Lifecycle (Streamlit 1.64, components v2; see the prototype's notes): the default export runs
// on mount and again on the same parentElement whenever data changes, and only the last cleanup
// runs, on unmount. So each parentElement has one instance (a WeakMap), updated in place. The
// module is shared by every instance on the page; one set of document/window listeners serves
// them all and lives on window, so a reloaded module never adds a second one.

const registry = (window.__cnnvizSteppers ??= {
  byRoot: new WeakMap(), // parentElement (a ShadowRoot) -> instance
  live: new Set(), // mounted instances, in mount order
  active: null, // the stepper last used: keys go there
  listening: false,
  stats: { calls: 0, mounts: 0, cleanups: 0, urlWrites: 0, syncs: 0 },
});

const URL_WRITE_DELAY_MS = 120; // trailing: a held key writes once (WebKit limits replaceState calls)
const SYNC_DELAY_MS = 400; // each sync reruns the stepper's fragment on the server
const PLAY_INTERVAL_MS = 800;
const KEY_ACTIONS = { ArrowLeft: "previous", ArrowRight: "next", Home: "first", End: "last", " ": "play" };
// Elements that use these keys themselves: typing, and Streamlit's widgets (its sliders and selects
// are divs with these roles, not <input>s).
const KEY_OWNERS = "input:not([type=checkbox], [type=button], [type=submit], [type=reset]), " +
  "textarea, select, [contenteditable], [role=textbox], [role=searchbox], [role=combobox], [role=listbox], " +
  "[role=option], [role=slider], [role=spinbutton], [role=radiogroup], [role=radio], [role=menu], " +
  "[role=menuitem], [role=grid], [role=tablist], [role=tab], [role=dialog]";
// Space presses these; it must not also toggle play.
const SPACE_OWNERS = "button, a[href], summary, label, input, [role=button], [role=checkbox], [role=switch]";
// Cell sizes in px: a lab's grids never larger than this, presenting as large as the screen allows.
const CELL = { normal: 46, narrowest: 30, tiny: 18, presenting: 120 };
const GRID_PX = 320; // outside the presenter view, a grid is about this wide at most (or has 30 px cells)
const GAP_PX = 24; // between groups of grids (the CSS --gap)
const FIGURE_GAP_PX = 10; // between the grids of a group (the CSS .group gap)
const CELL_GAP_PX = 2; // between cells (the CSS .grid gap)
const OPERATION_PX = 170; // pooling's "max 2×2, stride 2 →"
const PRESENTER_BAR_PX = 72; // the presenter view's row of controls above the stepper

// ---------------------------------------------------------------- listeners shared by all steppers

function origin(event) {
  const path = event.composedPath();
  return path.length > 0 ? path[0] : event.target;
}

function ownsKeys(element) {
  return element instanceof Element && (element.isContentEditable || element.closest(KEY_OWNERS) !== null);
}

function isVisible(instance) {
  const box = instance.host.getBoundingClientRect();
  return box.bottom > 0 && box.top < window.innerHeight && box.width > 0;
}

function pruneDetached() {
  for (const instance of registry.live) if (!instance.host.isConnected) destroy(instance);
}

// The stepper a key goes to: the one it was pressed in, else the one used last, else the first one
// on screen, else the first one on the page.
function keyTarget(event) {
  pruneDetached();
  const path = event.composedPath();
  for (const instance of registry.live) if (path.includes(instance.host)) return instance;
  if (registry.active && registry.live.has(registry.active)) return registry.active;
  const inPageOrder = [...registry.live].sort((a, b) =>
    a.host.compareDocumentPosition(b.host) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1);
  return inPageOrder.find(isVisible) ?? inPageOrder[0] ?? null;
}

function onKeyDown(event) {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  const action = KEY_ACTIONS[event.key];
  if (!action) return;
  const element = origin(event);
  if (ownsKeys(element)) return;
  if (action === "play" && element instanceof Element && element.closest(SPACE_OWNERS)) return;
  const instance = keyTarget(event);
  if (!instance) return;
  event.preventDefault(); // no page scroll on Space / Home / End, no second use of → by the presenter
  act(instance, action);
}

function onGoto(event) {
  const detail = event.detail ?? {};
  if (!Number.isInteger(detail.step)) return;
  pruneDetached();
  for (const instance of registry.live) {
    if (detail.key === undefined || detail.key === null || detail.key === instance.data.key) {
      stopPlaying(instance);
      goTo(instance, detail.step);
    }
  }
}

// A click elsewhere on the page (a setting, a link; not a stepper) may rerun the page: tell Python
// the step first, so that rerun does not write an older step into the URL.
function onPointerDown(event) {
  const path = event.composedPath();
  if ([...registry.live].some((instance) => path.includes(instance.host))) return;
  for (const instance of registry.live) if (instance.timers.sync !== null) sendStep(instance);
}

function listen() {
  if (registry.listening) return;
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("pointerdown", onPointerDown, true);
  window.addEventListener("cnnviz:goto", onGoto);
  registry.listening = true;
}

function stopListeningIfUnused() {
  if (registry.live.size > 0 || !registry.listening) return;
  document.removeEventListener("keydown", onKeyDown);
  document.removeEventListener("pointerdown", onPointerDown, true);
  window.removeEventListener("cnnviz:goto", onGoto);
  registry.listening = false;
}

function announce(name, detail) {
  window.dispatchEvent(new CustomEvent(name, { detail }));
}

// ---------------------------------------------------------------- building the grids

function part(root, name) {
  return root.querySelector(`[data-part="${name}"]`);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function lengthClass(label) {
  const n = [...label].length;
  return n <= 2 ? "" : `l${Math.min(n, 6)}`;
}

// Paint a cell with its label and palette colour ([background, text]), or leave it empty.
function paint(cell, label, colour, palette) {
  if (label === null) {
    cell.textContent = "";
    cell.className = "cell empty";
    cell.style.background = "";
    cell.style.color = "";
    return;
  }
  cell.textContent = label;
  cell.className = `cell ${lengthClass(label)}`;
  [cell.style.background, cell.style.color] = palette[colour];
}

// One grid with its title: returns the figure and its cells (row by row).
function figure(title, rows, cols, grid, palette, padding = new Set()) {
  const box = element("div", "figure");
  if (title) box.appendChild(element("div", "figure-title", title));
  const cells = element("div", "grid");
  cells.style.gridTemplateColumns = `repeat(${cols}, var(--cell))`;
  cells.setAttribute("role", "group");
  if (title) cells.setAttribute("aria-label", title);
  const list = [];
  for (let i = 0; i < rows * cols; i++) {
    const cell = element("div", "cell");
    if (grid) paint(cell, grid.labels[i], grid.colours[i], palette);
    else paint(cell, null);
    if (padding.has(i)) cell.classList.add("pad");
    cells.appendChild(cell);
    list.push(cell);
  }
  box.appendChild(cells);
  return { box, cells: list, cols };
}

function group(className, ...children) {
  const box = element("div", `group ${className}`);
  for (const child of children) box.appendChild(child);
  return box;
}

// The panels of a convolution: the padded input channels, the current filter's slices and bias
// (every filter built once, only the current one shown), the output channels.
function buildConv(instance) {
  const { data } = instance;
  const { inputs, outputs, palette } = data;
  const padding = new Set(inputs.padding);
  instance.inputFigures = inputs.grids.map((g) => figure(g.title, inputs.rows, inputs.cols, g, palette, padding));
  instance.filterBoxes = data.filters.map((filter) => {
    const slices = filter.slices.map((g) => figure(g.title, data.kernel, data.kernel, g, palette));
    const bias = element("div", "bias");
    bias.appendChild(element("span", "", "bias b ="));
    const cell = element("div", "cell");
    paint(cell, filter.bias.label, filter.bias.colour, palette);
    bias.appendChild(cell);
    const box = element("div", "filter");
    box.append(element("div", "figure-title", filter.title), group("slices", ...slices.map((s) => s.box)), bias);
    box.hidden = true;
    return box;
  });
  instance.outputFigures = outputs.grids.map((g) => figure(g.title, outputs.rows, outputs.cols, null, palette));
  const filters = element("div", "filters");
  filters.append(...instance.filterBoxes);
  instance.groups = [
    group("inputs", ...instance.inputFigures.map((f) => f.box)),
    filters,
    group("outputs", ...instance.outputFigures.map((f) => f.box)),
  ];
  // Each group's grids and their size in cells, for fitting (the bias adds a row under the slices).
  const d = inputs.grids.length;
  instance.shape = [
    { grids: d, cols: inputs.cols, rows: inputs.rows },
    { grids: d, cols: data.kernel, rows: data.kernel, extraRows: 1 },
    { grids: outputs.grids.length, cols: outputs.cols, rows: outputs.rows },
  ];
  instance.extraPx = 0;
}

// The panels of a pooling layer: the input channels, the operation, the output channels.
function buildPool(instance) {
  const { inputs, outputs, palette } = instance.data;
  instance.inputFigures = inputs.grids.map((g) => figure(g.title, inputs.rows, inputs.cols, g, palette));
  instance.outputFigures = outputs.grids.map((g) => figure(g.title, outputs.rows, outputs.cols, null, palette));
  instance.groups = [
    group("inputs", ...instance.inputFigures.map((f) => f.box)),
    element("div", "operation", instance.data.operation),
    group("outputs", ...instance.outputFigures.map((f) => f.box)),
  ];
  instance.shape = [
    { grids: inputs.grids.length, cols: inputs.cols, rows: inputs.rows },
    { grids: outputs.grids.length, cols: outputs.cols, rows: outputs.rows },
  ];
  instance.extraPx = OPERATION_PX;
}

function build(instance) {
  const panels = part(instance.root, "panels");
  if (instance.data.kind === "conv") buildConv(instance);
  else buildPool(instance);
  panels.replaceChildren(...instance.groups);
  instance.outputCells = instance.outputFigures.flatMap((f) => f.cells); // in step order
  instance.filled = -1;
  instance.marked = [];
  part(instance.root, "stepper").classList.toggle("present", Boolean(instance.data.present));
}

// ---------------------------------------------------------------- sizing

// The largest cell that fits: all groups in one row if cells can stay readable, else the groups wrap.
// Presenting, the stepper also fits the screen's height below the presenter bar, each group's grids
// side by side ("across") or stacked, whichever gives the larger cells. Estimated from the widths
// in cells, then measured: the stepper's height is linear in the cell size.
function fit(instance, force = false) {
  const panels = part(instance.root, "panels");
  const box = part(instance.root, "stepper");
  const width = panels.clientWidth;
  if (!width || !box.offsetHeight) return; // not laid out yet: the resize observer calls again
  if (!force && width === instance.fittedWidth) return;
  instance.fittedWidth = width;
  const shape = instance.shape;
  const widest = (arrangement) => {
    let cells = 0;
    let fixed = GAP_PX * (instance.groups.length - 1) + instance.extraPx + 2;
    for (const g of shape) {
      const grids = arrangement === "across" ? g.grids : 1;
      cells += grids * g.cols;
      fixed += grids * CELL_GAP_PX * (g.cols - 1) + FIGURE_GAP_PX * (grids - 1);
    }
    return Math.floor((width - fixed) / cells);
  };
  const tallest = (arrangement) => Math.max(...shape.map((g) =>
    (arrangement === "across" ? g.rows : g.grids * g.rows) + (g.extraRows ?? 0)));
  let arrangement = "stacked";
  let cell;
  if (instance.data.present) {
    // The screen's height below where the stepper starts (the presenter bar and any folded controls
    // above it), measured: the page decides what sits above the stepper.
    const top = instance.host.getBoundingClientRect().top + (document.scrollingElement?.scrollTop ?? 0);
    const room = window.innerHeight - (top > 0 ? top : PRESENTER_BAR_PX) - 8;
    const guess = (a) => Math.min(CELL.presenting, widest(a), Math.floor((room - 260) / tallest(a)));
    arrangement = guess("across") >= guess("stacked") ? "across" : "stacked";
    cell = Math.max(CELL.tiny, guess(arrangement));
    apply(instance, cell, arrangement);
    while (!inOneRow(instance) && cell > CELL.tiny) apply(instance, --cell, arrangement);
    const rest = box.offsetHeight - tallest(arrangement) * cell; // controls, titles, arithmetic
    cell = Math.max(CELL.tiny, Math.min(cell, Math.floor((room - rest) / tallest(arrangement))));
    apply(instance, cell, arrangement);
    return;
  } else {
    // Large cells for small grids; a 16×16 grid's smaller, so that it fits on the screen.
    const side = Math.max(...shape.map((g) => Math.max(g.rows, g.cols)));
    const largest = Math.max(CELL.narrowest, Math.min(CELL.normal, Math.floor(GRID_PX / side)));
    cell = Math.min(largest, widest("stacked"));
    if (cell < CELL.narrowest) {
      // Too narrow for all groups in a row (a phone): they wrap, each as wide as the screen allows.
      const cols = Math.max(...shape.map((g) => g.cols));
      apply(instance, Math.max(CELL.tiny, Math.min(largest, Math.floor((width - 2 * cols) / cols))), arrangement);
      return;
    }
  }
  apply(instance, cell, arrangement);
  // Titles and the operation's text may be wider than estimated: shrink until the groups share a row.
  while (!inOneRow(instance) && cell > CELL.narrowest) apply(instance, --cell, arrangement);
}

function apply(instance, cell, arrangement) {
  part(instance.root, "stepper").style.setProperty("--cell", `${cell}px`);
  for (const box of part(instance.root, "panels").querySelectorAll(".group")) {
    box.classList.toggle("across", arrangement === "across");
  }
}

function inOneRow(instance) {
  const boxes = instance.groups.map((group) => group.getBoundingClientRect()).filter((b) => b.height > 0);
  return Math.max(...boxes.map((b) => b.top)) < Math.min(...boxes.map((b) => b.bottom));
}

// ---------------------------------------------------------------- one step

function clearMarks(instance) {
  for (const cell of instance.marked) cell.classList.remove("win", "wt", "wb", "wl", "wr", "mark", "winner");
  instance.marked = [];
}

// Outline the window's cells on one grid: each cell gets the sides that face outside the window.
function outlineWindow(instance, fig, cells) {
  const inside = new Set(cells);
  const cols = fig.cols;
  for (const i of cells) {
    const cell = fig.cells[i];
    const col = i % cols;
    cell.classList.add("win");
    if (!inside.has(i - cols)) cell.classList.add("wt");
    if (!inside.has(i + cols)) cell.classList.add("wb");
    if (col === 0 || !inside.has(i - 1)) cell.classList.add("wl");
    if (col === cols - 1 || !inside.has(i + 1)) cell.classList.add("wr");
    instance.marked.push(cell);
  }
}

function mark(instance, cell, className) {
  cell.classList.add(className);
  instance.marked.push(cell);
}

// Output cells up to this step show their values; later ones are empty.
function fill(instance, step) {
  const { outputs, palette } = instance.data;
  const per = outputs.rows * outputs.cols;
  const from = Math.min(instance.filled, step) + 1;
  const to = Math.max(instance.filled, step);
  for (let i = Math.max(0, from); i <= to; i++) {
    const grid = outputs.grids[Math.floor(i / per)];
    const at = i % per;
    paint(instance.outputCells[i], i <= step ? grid.labels[at] : null, grid.colours[at], palette);
  }
  instance.filled = step;
}

function heading(text, rest) {
  const p = element("p", "heading");
  p.appendChild(element("strong", "", text));
  if (rest) p.appendChild(document.createTextNode(` ${rest}`));
  return p;
}

function lines(rows) {
  const box = element("div", "lines");
  for (const [label, expression] of rows) {
    box.appendChild(element("span", "line-label", label));
    box.appendChild(element("span", "expr", expression));
  }
  return box;
}

function renderConv(instance, step, position, channel) {
  const data = instance.data;
  for (const fig of instance.inputFigures) outlineWindow(instance, fig, data.windows[position]);
  instance.filterBoxes.forEach((box, f) => { box.hidden = f !== channel; });
  const caption = `${data.channel_captions[channel]}, ${data.position_captions[position]}`;
  const products = data.products[step].map((ids, c) =>
    [data.line_labels[c], `${ids.map((id) => data.terms[id]).join(" + ")} = ${data.sums[step][c]}`]);
  part(instance.root, "math").replaceChildren(
    heading(`Computing ${caption}:`, data.intro),
    lines([...products, ["total", data.totals[step]]]));
}

function renderPool(instance, step, position, channel) {
  const data = instance.data;
  const fig = instance.inputFigures[channel];
  outlineWindow(instance, fig, data.windows[position]);
  if (data.winners.length > 0) mark(instance, fig.cells[data.winners[step]], "winner");
  const caption = `${data.channel_captions[channel]}, ${data.position_captions[position]}`;
  const math = [heading(`Computing ${caption}`, data.crops[step]), lines([[data.line_label, data.maths[step]]])];
  if (data.notes.length > 0) math.push(element("p", "note", data.notes[step]));
  part(instance.root, "math").replaceChildren(...math);
}

function render(instance) {
  const { data, step } = instance;
  const positions = data.windows.length;
  const channel = Math.floor(step / positions);
  const position = step % positions;
  clearMarks(instance);
  fill(instance, step);
  if (data.kind === "conv") renderConv(instance, step, position, channel);
  else renderPool(instance, step, position, channel);
  mark(instance, instance.outputFigures[channel].cells[position], "mark");

  const last = data.count - 1;
  part(instance.root, "position").textContent = `Output ${step + 1} of ${data.count}`;
  part(instance.root, "bar").style.width = `${((step + 1) / data.count) * 100}%`;
  for (const button of instance.root.querySelectorAll("[data-act=first], [data-act=previous]")) button.disabled = step === 0;
  for (const button of instance.root.querySelectorAll("[data-act=next], [data-act=last]")) button.disabled = step === last;
  const playing = instance.timers.play !== null;
  part(instance.root, "play").setAttribute("aria-pressed", String(playing));
  part(instance.root, "play-label").textContent = playing ? "Pause" : "Play";
  part(instance.root, "icon-play").toggleAttribute("hidden", playing);
  part(instance.root, "icon-pause").toggleAttribute("hidden", !playing);
  part(instance.root, "stepper").dataset.step = String(step); // for tests
}

// ---------------------------------------------------------------- moving

function clampStep(instance, step) {
  return Math.max(0, Math.min(instance.data.count - 1, Number.isInteger(step) ? step : 0));
}

function writeUrlSoon(instance) {
  clearTimeout(instance.timers.url);
  instance.timers.url = setTimeout(() => {
    instance.timers.url = null;
    const url = new URL(window.location.href);
    const param = instance.data.param;
    // Step 0 is the page's default: its link leaves it out, as Python's UrlState does.
    const wanted = instance.step === 0 ? null : String(instance.step);
    if (url.searchParams.get(param) === wanted) return;
    if (wanted === null) url.searchParams.delete(param);
    else url.searchParams.set(param, wanted);
    window.history.replaceState(window.history.state, "", url);
    registry.stats.urlWrites++;
  }, URL_WRITE_DELAY_MS);
}

// Tell Python the step (and which of its commands we had seen), unless it already knows.
function sendStep(instance) {
  clearTimeout(instance.timers.sync);
  instance.timers.sync = null;
  const told = `${instance.step}:${instance.gotoId}`;
  if (instance.told === told) return;
  instance.told = told;
  registry.stats.syncs++;
  instance.setStateValue("goto", instance.gotoId);
  instance.setStateValue("step", instance.step);
}

function sendStepSoon(instance) {
  clearTimeout(instance.timers.sync);
  instance.timers.sync = setTimeout(() => sendStep(instance), SYNC_DELAY_MS);
}

function moved(instance) {
  render(instance);
  writeUrlSoon(instance);
  announce("cnnviz:stepped", { key: instance.data.key, param: instance.data.param, step: instance.step,
    steps: instance.data.count });
}

function goTo(instance, step) {
  step = clampStep(instance, step);
  if (step === instance.step) return;
  instance.step = step;
  moved(instance);
  // While playing, Python hears the step when play stops: a tick must not cost a rerun.
  if (instance.timers.play === null) sendStepSoon(instance);
}

function stopPlaying(instance) {
  if (instance.timers.play === null) return;
  clearInterval(instance.timers.play);
  instance.timers.play = null;
  render(instance);
  sendStepSoon(instance);
}

function togglePlay(instance) {
  if (instance.timers.play !== null) return stopPlaying(instance);
  if (instance.step === instance.data.count - 1) goTo(instance, 0);
  instance.timers.play = setInterval(() => {
    if (!instance.host.isConnected) return destroy(instance);
    goTo(instance, instance.step + 1);
    if (instance.step === instance.data.count - 1) stopPlaying(instance);
  }, PLAY_INTERVAL_MS);
  clearTimeout(instance.timers.sync); // Python hears the step when play stops
  instance.timers.sync = null;
  render(instance);
}

function act(instance, action) {
  registry.active = instance;
  const last = instance.data.count - 1;
  if (action === "play") return togglePlay(instance);
  stopPlaying(instance);
  if (action === "next" && instance.step === last) {
    announce("cnnviz:edge", { key: instance.data.key, direction: "next" });
  } else if (action === "previous" && instance.step === 0) {
    announce("cnnviz:edge", { key: instance.data.key, direction: "previous" });
  }
  const target = { first: 0, previous: instance.step - 1, next: instance.step + 1, last }[action];
  if (target !== undefined) goTo(instance, target);
}

// ---------------------------------------------------------------- mount, update, destroy

function stepFromUrl(param) {
  const raw = new URLSearchParams(window.location.search).get(param);
  return raw !== null && /^\d{1,6}$/.test(raw) ? Number(raw) : null;
}

function mount(root) {
  const instance = {
    root,
    host: root.host ?? root, // the shadow host (isolate_styles=True), else the element itself
    box: part(root, "stepper"),
    data: null,
    step: 0,
    gotoId: null,
    told: "",
    setStateValue: null,
    timers: { url: null, sync: null, play: null },
    resize: null,
  };
  for (const button of root.querySelectorAll("[data-act]")) {
    button.addEventListener("click", () => act(instance, button.dataset.act));
  }
  root.addEventListener("pointerdown", () => { registry.active = instance; });
  root.addEventListener("focusin", () => { registry.active = instance; });
  instance.resize = new ResizeObserver(() => fit(instance));
  instance.resize.observe(part(root, "panels"));
  instance.resize.observe(part(root, "stepper")); // laid out at last (it may mount hidden)
  instance.onWindowResize = () => fit(instance, true);
  window.addEventListener("resize", instance.onWindowResize);
  registry.byRoot.set(root, instance);
  registry.live.add(instance);
  registry.stats.mounts++;
  listen();
  return instance;
}

function destroy(instance) {
  clearTimeout(instance.timers.url);
  clearTimeout(instance.timers.sync);
  clearInterval(instance.timers.play);
  instance.timers = { url: null, sync: null, play: null };
  instance.resize?.disconnect();
  window.removeEventListener("resize", instance.onWindowResize);
  registry.live.delete(instance);
  registry.byRoot.delete(instance.root);
  if (registry.active === instance) registry.active = null;
  registry.stats.cleanups++;
  stopListeningIfUnused();
}

export default function stepper({ data, parentElement, setStateValue }) {
  registry.stats.calls++;
  let instance = registry.byRoot.get(parentElement);
  if (instance && !instance.box.isConnected) { // new markup (html/css changed): start over
    destroy(instance);
    instance = undefined;
  }
  const mounting = instance === undefined;
  if (mounting) instance = mount(parentElement);
  instance.setStateValue = setStateValue; // the latest carries the current fragment id
  const before = instance.step;
  instance.data = data;
  build(instance);
  if (mounting) {
    // Python's step (a link's, or where this session left the page); a reload of a link the
    // stepper wrote itself carries the same. Python's command of this run is not news.
    instance.gotoId = data.goto.id;
    instance.step = clampStep(instance, stepFromUrl(data.param) ?? data.goto.step);
    instance.told = `${data.goto.step}:${data.goto.id}`;
    render(instance);
    if (instance.step !== data.goto.step) sendStepSoon(instance);
  } else if (data.goto.id !== instance.gotoId) {
    // Python moved the stepper (a changed setting starts again at its step), and knows the step.
    instance.gotoId = data.goto.id;
    clearInterval(instance.timers.play);
    clearTimeout(instance.timers.sync);
    instance.timers.play = instance.timers.sync = null;
    instance.step = clampStep(instance, data.goto.step);
    instance.told = `${instance.step}:${instance.gotoId}`;
    if (instance.step !== before) moved(instance);
    else render(instance);
  } else {
    instance.step = clampStep(instance, instance.step); // fewer steps than before: the last one
    if (instance.step !== before) {
      moved(instance);
      if (instance.timers.play === null) sendStepSoon(instance);
    } else render(instance);
  }
  fit(instance, true); // new grids, drawn at this step: size their cells
  return () => destroy(instance);
}
