// Small helpers for building the page without a framework.

/** An element: h("button", {type: "button", onclick: f}, "text", child, ...). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

/** Replace an element's children (nulls and falses left out, as in h). */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Say something to the user (and to screen readers) in the page's status line. */
export function say(message, kind = "info") {
  const line = document.getElementById("status");
  line.textContent = message;
  line.dataset.kind = kind;
}

/** Ask before doing something that cannot be undone; resolves to the form's values or null. */
export function confirmDialog(title, message, fields = [], action = "Confirm") {
  const dialog = document.getElementById("dialog");
  return new Promise((resolve) => {
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", {}, title),
      h("p", {}, message),
      fields,
      h(
        "menu",
        {},
        h("button", { value: "cancel", type: "submit", formnovalidate: true }, "Cancel"),
        h("button", { value: "ok", type: "submit", class: "danger", id: "dialog-ok" }, action),
      ),
    );
    dialog.replaceChildren(form);
    dialog.onclose = () => {
      if (dialog.returnValue !== "ok") resolve(null);
      else resolve(Object.fromEntries(new FormData(form)));
    };
    dialog.returnValue = "";
    dialog.showModal();
  });
}

/** A labelled input. */
export function field(label, attributes = {}) {
  return h("label", {}, label, " ", h("input", attributes));
}

/** A table of rows: columns [{label, cell(row) -> node or text}]. */
export function table(caption, columns, rows, rowAttributes = () => ({})) {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttributes(row), columns.map((c) => h("td", {}, c.cell(row)))))),
  );
}
