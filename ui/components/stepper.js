// The labs' stepper (ui/client_stepper.py): a convolution or pooling layer, window by window, in
// the browser, with no script rerun per step.
//
// Python (cnnviz/stepping.py) computed everything shown for every step: the grids' labels and
// colours, the windows, the captions, the products, sums and totals, the pooled values. This
// script only places those strings and colours (textContent, never innerHTML: grid numbers are
// typed by users) and joins a channel's product terms with " + ". Three kinds of data: "conv" and
// "pool" (the labs), and "grids", a generic one (groups of figures, windows to outline, cells each
// step computes, captions and arithmetic lines: one step of gradient descent is one).
//
// Predict mode (the Predict button, or Python's command data.goto.predict from a link): the value
// a step computes stays hidden ("?") until the student has typed a guess. The guess is compared
// with the value the engine sent for that step (data.answers): an integer exactly, any other
// value within a relative 1e-3 (or as the page writes it, data.answer_labels). A right guess
// reveals the value and steps on; a wrong one says so and shows the arithmetic. No rerun either way.
//
// The step lives here. It goes
// - into the URL (?<param>=N, history.replaceState, 120 ms after the last move), so a copied link
//   or a reload opens it; predict mode too (?<predict_param>=1), when the page names a parameter;
// - to Python, 400 ms after the last move (setStateValue "step", with the id of the last command
//   from Python it has seen, "goto", and "predict"): one rerun of the stepper's fragment per burst;
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
const CELL = { normal: 46, comfortable: 34, narrowest: 30, tiny: 18, presenting: 120 };
const GRID_PX = 320; // outside the presenter view, a grid is about this wide at most (or has 30 px cells)
const GAP_PX = 24; // between groups of grids (the CSS --gap)
const FIGURE_GAP_PX = 10; // between the grids of a group (the CSS .group gap)
const CELL_GAP_PX = 2; // between cells (the CSS .grid gap)
const OPERATION_PX = 170; // pooling's "max 2×2, stride 2 →"
const RELATIVE_TOLERANCE = 1e-3; // a guess of a value that is not an integer may be this far off, relatively
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

// A group of grids, laid out as fit() decides for its entry `shape` in instance.shape.
function group(className, shape, ...children) {
  const box = element("div", `group ${className}`);
  box.dataset.shape = String(shape);
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
    box.append(element("div", "figure-title", filter.title), group("slices", 1, ...slices.map((s) => s.box)), bias);
    box.hidden = true;
    return box;
  });
  instance.outputFigures = outputs.grids.map((g) => figure(g.title, outputs.rows, outputs.cols, null, palette));
  const filters = element("div", "filters");
  filters.append(...instance.filterBoxes);
  instance.groups = [
    group("inputs", 0, ...instance.inputFigures.map((f) => f.box)),
    filters,
    group("outputs", 2, ...instance.outputFigures.map((f) => f.box)),
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
    group("inputs", 0, ...instance.inputFigures.map((f) => f.box)),
    element("div", "operation", instance.data.operation),
    group("outputs", 1, ...instance.outputFigures.map((f) => f.box)),
  ];
  instance.shape = [
    { grids: inputs.grids.length, cols: inputs.cols, rows: inputs.rows },
    { grids: outputs.grids.length, cols: outputs.cols, rows: outputs.rows },
  ];
  instance.extraPx = OPERATION_PX;
}

// The panels of the generic kind: each group a column of sets (only the step's set shown when a group
// has several), each set a title and its figures. Figures are numbered in that order, as the data's
// steps name them; a figure that "fills" starts empty and shows each cell from the step computing it.
function buildGrids(instance) {
  const { data } = instance;
  const { palette } = data;
  instance.figures = [];
  instance.setBoxes = [];
  instance.shape = [];
  instance.groups = data.groups.map((spec, shapeIndex) => {
    const column = element("div", "filters");
    const size = { grids: 0, cols: 1, rows: 1, extraRows: 0 };
    spec.sets.forEach((set, index) => {
      const figures = set.figures.map((f) => {
        const fig = figure(f.title, f.rows, f.cols, f.fills ? null : f, palette, new Set(f.padding ?? []));
        fig.spec = f;
        instance.figures.push(fig);
        return fig;
      });
      const box = element("div", "filter");
      if (set.title) box.appendChild(element("div", "figure-title", set.title));
      box.appendChild(group("slices", shapeIndex, ...figures.map((f) => f.box)));
      if (spec.sets.length > 1) {
        box.hidden = true;
        instance.setBoxes.push({ box, set: index });
      }
      column.appendChild(box);
      // For fitting: a set's larger grids side by side or stacked; a 1×1 grid (a bias) adds a row.
      const grids = set.figures.filter((f) => f.rows * f.cols > 1);
      size.grids = Math.max(size.grids, grids.length || 1);
      for (const f of grids) [size.cols, size.rows] = [Math.max(size.cols, f.cols), Math.max(size.rows, f.rows)];
      if (grids.length < set.figures.length) size.extraRows = 1;
    });
    instance.shape.push(size);
    return column;
  });
  instance.extraPx = 0;
}

function build(instance) {
  const panels = part(instance.root, "panels");
  const { kind } = instance.data;
  if (kind === "conv") buildConv(instance);
  else if (kind === "pool") buildPool(instance);
  else buildGrids(instance);
  panels.replaceChildren(...instance.groups);
  instance.outputCells = kind === "grids" ? [] : instance.outputFigures.flatMap((f) => f.cells); // in step order
  instance.filled = -1;
  instance.marked = [];
  instance.asked = [];
  instance.guesses = new Map(); // step -> {text, right} or {shown: true}: a new layer asks again
  instance.verdict = null;
  part(instance.root, "stepper").classList.toggle("present", Boolean(instance.data.present));
}

// The cells step i computes, with the label and colour each shows once computed: [cell, label, colour].
function computedCells(instance, i) {
  const { data } = instance;
  if (data.kind === "grids") {
    return data.compute[i].map(([fig, at]) => {
      const { cells, spec } = instance.figures[fig];
      return [cells[at], spec.labels[at], spec.colours[at]];
    });
  }
  const { outputs } = data;
  const per = outputs.rows * outputs.cols;
  const grid = outputs.grids[Math.floor(i / per)];
  return [[instance.outputCells[i], grid.labels[i % per], grid.colours[i % per]]];
}

// ---------------------------------------------------------------- sizing

// How the groups lay out their grids: a budget of rows of cells that each group's column of grids may
// take. ACROSS puts each group's grids in one row, STACKED in one column (the labs' usual look); a budget
// in between gives a group as many columns as its grids need to stay within it, so that many grids (more
// than 3 input channels) stay on one screen instead of making one very tall column.
const ACROSS = 0;
const STACKED = Infinity;
const MANY_GRIDS = 3;

function columnsOf(g, budget) {
  if (budget === ACROSS) return g.grids;
  if (budget === STACKED) return 1;
  return Math.ceil(g.grids / Math.max(1, Math.floor((budget - (g.extraRows ?? 0)) / g.rows)));
}

// The budgets worth trying: the heights of k grids of each group, for every k.
function budgets(shape) {
  const heights = new Set();
  for (const g of shape) for (let k = 1; k < g.grids; k++) heights.add(k * g.rows + (g.extraRows ?? 0));
  return [...heights].sort((a, b) => a - b);
}

// The largest cell that fits: all groups in one row if cells can stay readable, else the groups wrap.
// Presenting, the stepper also fits the screen's height below the presenter bar, the groups' grids
// across, stacked or in columns, whichever gives the larger cells. Estimated from the widths in
// cells, then measured: the stepper's height is linear in the cell size.
function fit(instance, force = false) {
  const panels = part(instance.root, "panels");
  const box = part(instance.root, "stepper");
  const width = panels.clientWidth;
  if (!width || !box.offsetHeight) return; // not laid out yet: the resize observer calls again
  if (!force && width === instance.fittedWidth) return;
  instance.fittedWidth = width;
  const shape = instance.shape;
  const widest = (budget) => {
    let cells = 0;
    let fixed = GAP_PX * (instance.groups.length - 1) + instance.extraPx + 2;
    for (const g of shape) {
      const grids = columnsOf(g, budget);
      cells += grids * g.cols;
      fixed += grids * CELL_GAP_PX * (g.cols - 1) + FIGURE_GAP_PX * (grids - 1);
    }
    return Math.floor((width - fixed) / cells);
  };
  const tallest = (budget) => Math.max(...shape.map((g) =>
    Math.ceil(g.grids / columnsOf(g, budget)) * g.rows + (g.extraRows ?? 0)));
  const many = Math.max(...shape.map((g) => g.grids)) > MANY_GRIDS;
  let arrangement = STACKED;
  let cell;
  if (instance.data.present) {
    // The screen's height below where the stepper starts (the presenter bar and any folded controls
    // above it), measured: the page decides what sits above the stepper.
    const top = instance.host.getBoundingClientRect().top + (document.scrollingElement?.scrollTop ?? 0);
    const room = window.innerHeight - (top > 0 ? top : PRESENTER_BAR_PX) - 8;
    const guess = (budget) => Math.min(CELL.presenting, widest(budget), Math.floor((room - 260) / tallest(budget)));
    arrangement = guess(ACROSS) >= guess(STACKED) ? ACROSS : STACKED;
    for (const budget of many ? budgets(shape) : []) if (guess(budget) > guess(arrangement)) arrangement = budget;
    cell = Math.max(CELL.tiny, guess(arrangement));
    apply(instance, cell, arrangement);
    while (!inOneRow(instance) && cell > CELL.tiny) apply(instance, --cell, arrangement);
    // Controls, titles and arithmetic; in predict mode the revealed arithmetic and its verdict, so that
    // a guess never pushes the stepper off the screen.
    const rest = withRevealedMath(instance, () => box.offsetHeight) - tallest(arrangement) * cell;
    cell = Math.max(CELL.tiny, Math.min(cell, Math.floor((room - rest) / tallest(arrangement))));
    apply(instance, cell, arrangement);
    return;
  }
  // Large cells for small grids; a 16×16 grid's smaller, so that it fits on the screen.
  const side = Math.max(...shape.map((g) => Math.max(g.rows, g.cols)));
  const largest = Math.max(CELL.narrowest, Math.min(CELL.normal, Math.floor(GRID_PX / side)));
  if (many) {
    // Many grids: the lowest arrangement whose cells stay comfortably readable, else one column each.
    arrangement = budgets(shape).find((budget) => widest(budget) >= Math.min(largest, CELL.comfortable)) ?? STACKED;
  }
  cell = Math.min(largest, widest(arrangement));
  if (cell < CELL.narrowest) {
    // Too narrow for all groups in a row (a phone): they wrap, each grid as wide as the screen allows.
    const cols = Math.max(...shape.map((g) => g.cols));
    apply(instance, Math.max(CELL.tiny, Math.min(largest, Math.floor((width - 2 * cols) / cols))), STACKED);
    return;
  }
  apply(instance, cell, arrangement);
  // Titles and the operation's text may be wider than estimated: shrink until the groups share a row.
  while (!inOneRow(instance) && cell > CELL.narrowest) apply(instance, --cell, arrangement);
}

// measure() with the math panel as a revealed step shows it in predict mode (its verdict and arithmetic).
function withRevealedMath(instance, measure) {
  const math = part(instance.root, "math");
  if (!instance.predict) return measure();
  const shown = [...math.childNodes];
  math.replaceChildren(element("p", "verdict", "✓"), ...arithmetic(explain(instance, instance.step)));
  try {
    return measure();
  } finally {
    math.replaceChildren(...shown);
  }
}

// Each .group of grids carries the index of its entry in instance.shape (data-shape).
function apply(instance, cell, budget) {
  part(instance.root, "stepper").style.setProperty("--cell", `${cell}px`);
  for (const box of part(instance.root, "panels").querySelectorAll(".group[data-shape]")) {
    const columns = columnsOf(instance.shape[Number(box.dataset.shape)], budget);
    box.classList.toggle("across", budget === ACROSS);
    box.classList.toggle("columns", budget !== ACROSS && columns > 1);
    box.style.setProperty("--columns", String(columns));
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

// Cells computed up to this step show their values; later ones are empty.
function fill(instance, step) {
  const { palette } = instance.data;
  const from = Math.min(instance.filled, step) + 1;
  const to = Math.max(instance.filled, step);
  for (let i = Math.max(0, from); i <= to; i++) {
    for (const [cell, label, colour] of computedCells(instance, i)) paint(cell, i <= step ? label : null, colour, palette);
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

// Each kind outlines its step's windows and marks the cells it computes (markConv, ...), and says what
// the step computes (explainConv, ...): a caption, the sentence after it, the arithmetic lines (the last
// `result` of them give the result), notes, and a hint for predicting it.

function where(instance, step) {
  const positions = instance.data.windows.length;
  return [Math.floor(step / positions), step % positions]; // output channel, window position
}

function markConv(instance, step) {
  const [channel, position] = where(instance, step);
  for (const fig of instance.inputFigures) outlineWindow(instance, fig, instance.data.windows[position]);
  instance.filterBoxes.forEach((box, f) => { box.hidden = f !== channel; });
  mark(instance, instance.outputFigures[channel].cells[position], "mark");
}

function explainConv(data, step, channel, position) {
  const products = data.products[step].map((ids, c) =>
    [data.line_labels[c], `${ids.map((id) => data.terms[id]).join(" + ")} = ${data.sums[step][c]}`]);
  return { caption: `${data.channel_captions[channel]}, ${data.position_captions[position]}`, colon: ":",
    intro: data.intro, lines: [...products, ["total", data.totals[step]]], result: 1, notes: [], hint: data.predict_hint };
}

function markPool(instance, step) {
  const [channel, position] = where(instance, step);
  const fig = instance.inputFigures[channel];
  outlineWindow(instance, fig, instance.data.windows[position]);
  if (instance.data.winners.length > 0) mark(instance, fig.cells[instance.data.winners[step]], "winner");
  mark(instance, instance.outputFigures[channel].cells[position], "mark");
}

function explainPool(data, step, channel, position) {
  return { caption: `${data.channel_captions[channel]}, ${data.position_captions[position]}`, colon: "",
    intro: data.crops[step], lines: [[data.line_label, data.maths[step]]], result: 1,
    notes: data.notes.length > 0 ? [data.notes[step]] : [], hint: data.predict_hint };
}

function markGrids(instance, step) {
  const { data } = instance;
  for (const [fig, win] of data.outline[step]) outlineWindow(instance, instance.figures[fig], data.windows[win]);
  for (const { box, set } of instance.setBoxes) box.hidden = set !== data.sets[step];
  for (const [fig, at] of data.compute[step]) mark(instance, instance.figures[fig].cells[at], "mark");
}

function explainGrids(data, step) {
  const intro = data.intros[data.intro_of[step]];
  const rows = data.lines[step].map(([label, ids, tail]) => [label, ids.map((id) => data.terms[id]).join(" + ") + tail]);
  return { caption: data.captions[step], colon: ":", intro, lines: rows, result: rows.length, notes: [], hint: intro };
}

function markStep(instance, step) {
  const { kind } = instance.data;
  (kind === "conv" ? markConv : kind === "pool" ? markPool : markGrids)(instance, step);
}

function explain(instance, step) {
  const { data } = instance;
  if (data.kind === "grids") return explainGrids(data, step);
  return (data.kind === "conv" ? explainConv : explainPool)(data, step, ...where(instance, step));
}

// ---------------------------------------------------------------- predicting

function isAsking(instance) {
  return instance.predict && instance.timers.play === null && !instance.guesses.has(instance.step);
}

// The step's cells wait for a guess: "?" instead of the value (painted again by fill once passed).
function ask(instance, step) {
  instance.asked = computedCells(instance, step).map(([cell]) => cell);
  for (const cell of instance.asked) {
    cell.textContent = "?";
    cell.className = "cell ask";
    cell.style.background = "";
    cell.style.color = "";
  }
  instance.filled = step - 1;
}

function unask(instance) {
  for (const cell of instance.asked) paint(cell, null);
  instance.asked = [];
}

// A student's number: the typographic minus (and dashes) as "-", a decimal comma as a point, spaces
// and thousands separators (commas beside a point) ignored. null when it is not a number.
function parseGuess(text) {
  let t = String(text).trim().replace(/[\u2212\u2013\u2014]/g, "-").replace(/[\s\u00a0\u202f']/g, "");
  if (t.includes(",")) t = t.includes(".") || (t.match(/,/g) ?? []).length > 1 ? t.replace(/,/g, "") : t.replace(",", ".");
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return null;
  return Number(t);
}

// Whether a guess is the engine's value: integers exactly, other values within a relative 1e-3, or
// equal to the value as the page writes it (3 decimals).
function isRight(guess, answer, label) {
  if (Number.isInteger(answer)) return guess === answer;
  if (Math.abs(guess - answer) <= RELATIVE_TOLERANCE * Math.abs(answer) * (1 + 1e-9)) return true;
  return guess === parseGuess(label);
}

function verdictLine(instance, step, outcome) {
  const label = instance.data.answer_labels[step];
  if (outcome.shown) return element("p", "verdict", `The value is ${label}.`);
  if (outcome.right) return element("p", "verdict right", `✓ Right: ${label}.`);
  return element("p", "verdict wrong", `✗ Not quite: you said ${outcome.text}; it is ${label}.`);
}

function question(instance, step, shown) {
  const form = element("form", "guess");
  form.noValidate = true;
  const input = element("input");
  Object.assign(input, { type: "text", inputMode: "decimal", autocomplete: "off", spellcheck: false });
  input.dataset.part = "guess";
  input.setAttribute("aria-label", `Your value for ${shown.caption}`);
  input.placeholder = "your value";
  const check = element("button", "primary", "Check");
  check.type = "submit";
  check.title = "Check your value (Enter)";
  const reveal = element("button", "", "Show me");
  reveal.type = "button";
  reveal.dataset.part = "reveal";
  const problem = element("span", "problem");
  problem.dataset.part = "guess-problem";
  problem.setAttribute("role", "alert");
  form.append(input, check, reveal, problem);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = parseGuess(input.value);
    if (value === null) {
      problem.textContent = input.value.trim() ? "Type a number, like 2, −1.5 or 0,25." : "Type your value first.";
      return;
    }
    guess(instance, step, { text: input.value.trim(), right: isRight(value, instance.data.answers[step],
      instance.data.answer_labels[step]) });
  });
  reveal.addEventListener("click", () => guess(instance, step, { shown: true }));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") input.blur();
    // Arrows in an empty box step, as they do everywhere else on the page.
    const action = { ArrowLeft: "previous", ArrowRight: "next" }[event.key];
    if (action && input.value === "" && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      act(instance, action);
    }
  });
  const parts = [];
  if (instance.verdict && instance.verdict.step === step - 1) {
    // The guess before this one was right: it stepped on, and its result stays in view.
    const before = explain(instance, step - 1);
    parts.push(verdictLine(instance, step - 1, instance.verdict.outcome),
      lines(before.lines.slice(before.lines.length - before.result)));
  }
  parts.push(heading(`Predict ${shown.caption}:`, shown.hint), form);
  return parts;
}

function guess(instance, step, outcome) {
  registry.active = instance;
  instance.guesses.set(step, outcome);
  const last = instance.data.count - 1;
  if (outcome.right && step < last) {
    instance.verdict = { step, outcome };
    goTo(instance, step + 1);
    focusGuess(instance);
    return;
  }
  instance.verdict = null;
  render(instance);
  const next = instance.root.querySelector("[data-act=next]");
  if (!next.disabled) next.focus({ preventScroll: true }); // Enter or → moves on
}

function focusGuess(instance) {
  instance.root.querySelector("[data-part=guess]")?.focus({ preventScroll: true });
}

// Predict mode on or off: in this stepper, and in every stepper of the page that shares its link parameter.
function setPredict(instance, on) {
  const param = instance.data.predict_param;
  for (const other of registry.live) {
    if (other !== instance && !(param && other.data.predict_param === param)) continue;
    if (other.predict === on) continue;
    other.predict = on;
    other.verdict = null;
    if (on) stopPlaying(other);
    render(other);
    writeUrlSoon(other);
    if (param) sendStepSoon(other);
  }
  if (on) focusGuess(instance);
}

// ---------------------------------------------------------------- one step

function arithmetic(shown) {
  return [heading(`Computing ${shown.caption}${shown.colon}`, shown.intro), lines(shown.lines),
    ...shown.notes.map((note) => element("p", "note", note))];
}

function render(instance) {
  const { data, step } = instance;
  clearMarks(instance);
  unask(instance);
  fill(instance, step);
  const asking = isAsking(instance);
  if (asking) ask(instance, step);
  markStep(instance, step);
  const shown = explain(instance, step);
  const outcome = instance.predict ? instance.guesses.get(step) : undefined;
  part(instance.root, "math").replaceChildren(...(asking ? question(instance, step, shown) : [
    ...(outcome ? [verdictLine(instance, step, outcome)] : []), ...arithmetic(shown)]));

  const last = data.count - 1;
  part(instance.root, "position").textContent = `${data.kind === "grids" ? "Step" : "Output"} ${step + 1} of ${data.count}`;
  part(instance.root, "bar").style.width = `${((step + 1) / data.count) * 100}%`;
  for (const button of instance.root.querySelectorAll("[data-act=first], [data-act=previous]")) button.disabled = step === 0;
  for (const button of instance.root.querySelectorAll("[data-act=next], [data-act=last]")) button.disabled = step === last;
  const playing = instance.timers.play !== null;
  part(instance.root, "play").setAttribute("aria-pressed", String(playing));
  part(instance.root, "play-label").textContent = playing ? "Pause" : "Play";
  part(instance.root, "icon-play").toggleAttribute("hidden", playing);
  part(instance.root, "icon-pause").toggleAttribute("hidden", !playing);
  part(instance.root, "predict").setAttribute("aria-pressed", String(instance.predict));
  const box = part(instance.root, "stepper");
  box.dataset.step = String(step); // for tests
  box.dataset.asking = String(asking);
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
    const { param, predict_param: predictParam } = instance.data;
    // Step 0 and predict mode off are the page's defaults: its link leaves them out, as Python's UrlState does.
    const wanted = [[param, instance.step === 0 ? null : String(instance.step)]];
    if (predictParam) wanted.push([predictParam, instance.predict ? "1" : null]);
    if (wanted.every(([name, value]) => url.searchParams.get(name) === value)) return;
    for (const [name, value] of wanted) {
      if (value === null) url.searchParams.delete(name);
      else url.searchParams.set(name, value);
    }
    window.history.replaceState(window.history.state, "", url);
    registry.stats.urlWrites++;
  }, URL_WRITE_DELAY_MS);
}

// Tell Python the step (and which of its commands we had seen), unless it already knows.
function sendStep(instance) {
  clearTimeout(instance.timers.sync);
  instance.timers.sync = null;
  const told = knownToPython(instance);
  if (instance.told === told) return;
  instance.told = told;
  registry.stats.syncs++;
  instance.setStateValue("goto", instance.gotoId);
  instance.setStateValue("step", instance.step);
  if (instance.data.predict_param) instance.setStateValue("predict", instance.predict);
}

// What Python has heard (or told us): the step, predict mode when the page keeps it, and its last command.
function knownToPython(instance) {
  return `${instance.step}:${instance.data.predict_param ? instance.predict : ""}:${instance.gotoId}`;
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
  instance.verdict = null;
  const last = instance.data.count - 1;
  if (action === "play") return togglePlay(instance);
  if (action === "predict") return setPredict(instance, !instance.predict);
  stopPlaying(instance);
  if (action === "next" && instance.step === last) {
    announce("cnnviz:edge", { key: instance.data.key, direction: "next" });
  } else if (action === "previous" && instance.step === 0) {
    announce("cnnviz:edge", { key: instance.data.key, direction: "previous" });
  }
  const target = { first: 0, previous: instance.step - 1, next: instance.step + 1, last }[action];
  if (target !== undefined) goTo(instance, target);
  if (isAsking(instance)) focusGuess(instance); // the student stepped here: the box is theirs to type in
}

// ---------------------------------------------------------------- mount, update, destroy

function stepFromUrl(param) {
  const raw = new URLSearchParams(window.location.search).get(param);
  return raw !== null && /^\d{1,6}$/.test(raw) ? Number(raw) : null;
}

function predictFromUrl(param) {
  const raw = param ? new URLSearchParams(window.location.search).get(param) : null;
  return raw === "1" ? true : raw === "0" ? false : null;
}

function mount(root) {
  const instance = {
    root,
    host: root.host ?? root, // the shadow host (isolate_styles=True), else the element itself
    box: part(root, "stepper"),
    data: null,
    step: 0,
    predict: false,
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
    instance.step = clampStep(instance, data.goto.step);
    instance.predict = Boolean(data.goto.predict);
    instance.told = knownToPython(instance);
    instance.step = clampStep(instance, stepFromUrl(data.param) ?? data.goto.step);
    instance.predict = predictFromUrl(data.predict_param) ?? instance.predict;
    render(instance);
    if (knownToPython(instance) !== instance.told) sendStepSoon(instance);
  } else if (data.goto.id !== instance.gotoId) {
    // Python moved the stepper (a changed setting starts again at its step), and knows the step.
    instance.gotoId = data.goto.id;
    clearInterval(instance.timers.play);
    clearTimeout(instance.timers.sync);
    instance.timers.play = instance.timers.sync = null;
    instance.step = clampStep(instance, data.goto.step);
    instance.predict = Boolean(data.goto.predict);
    instance.told = knownToPython(instance);
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
