// agentwatch dashboard: the little the pages need beyond HTML.
// Selectors marked data-autosubmit apply on change; links and forms work without this file.
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
    target.form.requestSubmit();
  }
});
// A session opened from an alert or a cluster example: open the spans of the trace it names.
window.addEventListener("DOMContentLoaded", () => {
  const anchor = window.location.hash.startsWith("#trace-") ? document.getElementById(window.location.hash.slice(1)) : null;
  if (anchor) {
    anchor.querySelectorAll("details.span.failed").forEach((d) => { d.open = true; });
    anchor.scrollIntoView({ block: "start" });
  }
});
// The review queue: j/k move between sessions, 1-5 label the focused one, d toggles "also add to the dataset", o opens it.
(() => {
  const items = () => Array.from(document.querySelectorAll(".review-item"));
  const focused = () => document.querySelector(".review-item.focused") || items()[0];
  const focus = (item) => {
    if (!item) return;
    items().forEach((i) => i.classList.toggle("focused", i === item));
    item.scrollIntoView({ block: "nearest" });
  };
  document.addEventListener("keydown", (event) => {
    if (!document.querySelector(".review-item") || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target instanceof HTMLElement ? event.target.tagName : "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    const all = items();
    const current = focused();
    const index = all.indexOf(current);
    if (event.key === "j") { focus(all[Math.min(index + 1, all.length - 1)]); event.preventDefault(); }
    else if (event.key === "k") { focus(all[Math.max(index - 1, 0)]); event.preventDefault(); }
    else if (event.key === "d") { const box = document.getElementById("add-to-dataset"); box.checked = !box.checked; event.preventDefault(); }
    else if (event.key === "o") { const link = current && current.querySelector("a.open"); if (link) link.click(); }
    else if (/^[1-5]$/.test(event.key) && current) {
      const button = current.querySelector(`button[data-key="${event.key}"]`);
      if (button) { event.preventDefault(); button.click(); }
    }
  });
  document.addEventListener("click", (event) => {
    const item = event.target instanceof Element ? event.target.closest(".review-item") : null;
    if (item) focus(item);
  });
  // A label posts the dataset choice with it, and remembers who is labelling.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("label-form")) return;
    const box = document.getElementById("add-to-dataset");
    form.elements.namedItem("add").value = box && box.checked ? "on" : "";
    form.elements.namedItem("dataset").value = document.getElementById("dataset-name").value;
    const author = form.elements.namedItem("author");
    if (author.value) { localStorage.setItem("agentwatch-author", author.value); }
    else { author.value = localStorage.getItem("agentwatch-author") || ""; }
    sessionStorage.setItem("agentwatch-add", box && box.checked ? "on" : "");
  });
  window.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("add-to-dataset");
    if (box) box.checked = sessionStorage.getItem("agentwatch-add") === "on";
    document.querySelectorAll(".label-form .author").forEach((input) => {
      if (!input.value) input.value = localStorage.getItem("agentwatch-author") || "";
    });
  });
})();
