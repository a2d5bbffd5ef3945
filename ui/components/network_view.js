// The classify page's overview of the network (ui/explain.py), a Streamlit components v2 module.
//
// data: {columns, selected, hint, present, tile}. Every picture is the engine's PNG and every number the
// engine's text (cnnviz.classify_figures.overview_data); this script only places them (textContent, never
// innerHTML: class names come from uploaded checkpoints). A click on a map, a vector's cell or a score
// row sends which unit it was, {column, channel, row, col} (0-based), with setTriggerValue("unit"): one
// rerun, in which Python computes that unit's arithmetic (cnnviz.explain) and draws it below. Finding the
// map cell under the pointer is the only arithmetic here (where, not what).
//
// Lifecycle (components v2): the default export runs again on the same parentElement when data changes;
// only the last cleanup runs, on unmount. Each call rebuilds the columns from data; the scroll position
// of the row of columns is kept.

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function image(src, alt) {
  const img = document.createElement("img");
  img.src = src;
  img.alt = alt;
  img.draggable = false;
  return img;
}

// The cell of a rows×cols picture under a click on it.
function cellAt(event, img, rows, cols) {
  const box = img.getBoundingClientRect();
  const row = Math.floor(((event.clientY - box.top) / box.height) * rows);
  const col = Math.floor(((event.clientX - box.left) / box.width) * cols);
  return [Math.min(rows - 1, Math.max(0, row)), Math.min(cols - 1, Math.max(0, col))];
}

// An amber ring over cells top..bottom, left..right (inclusive) of a rows×cols picture.
function mark(holder, rows, cols, top, left, bottom, right) {
  const ring = element("div", "mark");
  ring.style.top = `${(top / rows) * 100}%`;
  ring.style.left = `${(left / cols) * 100}%`;
  ring.style.height = `${((bottom - top + 1) / rows) * 100}%`;
  ring.style.width = `${((right - left + 1) / cols) * 100}%`;
  ring.dataset.part = "mark";
  holder.appendChild(ring);
}

function header(column) {
  const head = element("div", "head");
  head.title = column.label;
  head.appendChild(element("div", "n", column.number === 0 ? "input" : String(column.number)));
  if (column.number !== 0) head.appendChild(element("div", "", column.title));
  head.appendChild(element("div", "shape", column.shape));
  return head;
}

function buildColumn(column, selected, send) {
  const box = element("div", `column kind-${column.kind}`);
  box.setAttribute("role", "listitem");
  box.dataset.column = String(column.number);
  const chosen = selected && selected.column === column.number;
  if (chosen) box.classList.add("chosen");
  if (column.clickable) box.classList.add("clickable");
  box.appendChild(header(column));

  if (column.picture) { // the input, with the chosen unit's receptive field
    const holder = element("div", "input");
    holder.appendChild(image(column.picture.src, "the network's input"));
    if (selected && selected.field) {
      const [top, left, bottom, right] = selected.field;
      mark(holder, column.picture.rows, column.picture.cols, top, left, bottom, right);
    }
    box.appendChild(holder);
  }
  for (const map of column.maps ?? []) {
    const tile = element("div", "tile");
    tile.dataset.channel = String(map.channel);
    tile.appendChild(element("span", "ch", `#${map.channel + 1}`));
    const holder = element("div", "pic");
    const img = image(map.src, `channel ${map.channel + 1}`);
    holder.appendChild(img);
    tile.appendChild(holder);
    if (column.clickable) {
      img.addEventListener("click", (event) => {
        const [row, col] = cellAt(event, img, column.rows, column.cols);
        send({ column: column.number, channel: map.channel, row, col });
      });
    }
    if (chosen && selected.channel === map.channel) {
      mark(holder, column.rows, column.cols, selected.row, selected.col, selected.row, selected.col);
    }
    box.appendChild(tile);
  }
  if (column.vector) {
    const v = column.vector;
    const holder = element("div", "vector");
    const img = image(v.src, `${v.n} numbers`);
    holder.appendChild(img);
    if (column.clickable) {
      img.addEventListener("click", (event) => {
        const [row, col] = cellAt(event, img, v.rows, v.cols);
        const index = row * v.cols + col;
        if (index < v.n) send({ column: column.number, channel: index, row: 0, col: 0 });
      });
    }
    if (chosen && selected.channel < v.n) {
      const r = Math.floor(selected.channel / v.cols);
      const c = selected.channel % v.cols;
      mark(holder, v.rows, v.cols, r, c, r, c);
    }
    box.appendChild(holder);
  }
  if (column.list) {
    // The softmax's rows line up with the scores' just before it: its values alone, the names once.
    box.classList.add(column.kind === "softmax" ? "values" : "wide");
    const list = element("div", "list");
    for (const item of column.list) {
      const row = element("div", "row");
      row.dataset.index = String(item.index);
      const bar = element("div", "bar");
      bar.style.width = `${Math.round(item.share * 100)}%`;
      bar.style.background = item.colour;
      if (column.kind === "softmax") row.append(bar, element("span", "value", item.text));
      else row.append(bar, element("span", "name", item.name), element("span", "value", item.text));
      row.title = `${item.name}: ${item.text}`;
      if (column.clickable) {
        row.setAttribute("role", "button");
        row.tabIndex = 0;
        const pick = () => send({ column: column.number, channel: item.index, row: 0, col: 0 });
        row.addEventListener("click", pick);
        row.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            pick();
          }
        });
      }
      if (chosen && selected.channel === item.index) row.classList.add("chosen");
      list.appendChild(row);
    }
    box.appendChild(list);
  }
  if (column.more > 0) box.appendChild(element("div", "more", `+ ${column.more} more`));
  return box;
}

export default function networkView({ data, parentElement, setTriggerValue }) {
  const root = parentElement.querySelector("[data-part=network]");
  const row = parentElement.querySelector("[data-part=columns]");
  const scroll = row.scrollLeft;
  root.classList.toggle("present", Boolean(data.present));
  root.style.setProperty("--tile", `${data.tile ?? 56}px`);
  const send = (unit) => setTriggerValue("unit", unit);
  row.replaceChildren(...data.columns.map((column) => buildColumn(column, data.selected, send)));
  row.scrollLeft = scroll;
  if (data.selected && scroll === 0) { // a link's unit: bring its column into view
    const chosen = row.querySelector(".column.chosen");
    if (chosen && chosen.offsetLeft + chosen.offsetWidth > row.clientWidth) {
      row.scrollLeft = chosen.offsetLeft - row.clientWidth / 2;
    }
  }
  parentElement.querySelector("[data-part=hint]").textContent = data.hint ?? "";
  return () => {};
}
