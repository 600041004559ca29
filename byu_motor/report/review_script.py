"""The review page's script and style: keyboard and click decisions, progress, localStorage, CSV export."""

from __future__ import annotations

#: Columns of the exported decisions CSV (the ``labels apply`` input); coordinates in original voxels.
DECISION_COLUMNS = ("tomo_id", "kind", "decision", "cand_z", "cand_y", "cand_x", "score", "label_z", "label_y",
                    "label_x")  # fmt: skip
#: Key -> decision.
KEYS = {"a": "accept", "k": "keep", "r": "reject", "s": "skip"}

STYLE = """
#bar { position: sticky; top: 0; background: #fff; padding: 6px; border-bottom: 1px solid #ccc; z-index: 2; }
.card { border: 2px solid #ccc; margin: 10px 0; padding: 6px; background: #fff;
        content-visibility: auto; contain-intrinsic-size: auto 260px; }
.card.current { border-color: #1f6feb; box-shadow: 0 0 6px #1f6feb; }
.card .views { display: flex; gap: 8px; } .card figure { margin: 0; }
.view { position: relative; background: #000; } .view img, .view svg { position: absolute; left: 0; top: 0; }
.view img { image-rendering: pixelated; }
.card[data-decision] .head::after { content: " -> " attr(data-decision); font-weight: bold; color: #1f6feb; }
.legend span { margin-right: 1em; } .cand { color: #e0245e; } .label { color: #17bf63; }
button.sel { background: #1f6feb; color: #fff; }
"""

SCRIPT = r"""
(function () {
  const cases = JSON.parse(document.getElementById("cases").textContent);
  const pageKey = "byu_motor_review:" + document.body.dataset.pageId;
  const decisions = JSON.parse(localStorage.getItem(pageKey) || "{}");
  const cards = Array.from(document.querySelectorAll(".card"));
  const KEYS = {a: "accept", k: "keep", r: "reject", s: "skip"};
  let current = 0;
  function show() {
    cards.forEach((card, i) => {
      card.classList.toggle("current", i === current);
      const d = decisions[i];
      if (d) { card.dataset.decision = d; } else { delete card.dataset.decision; }
      card.querySelectorAll("button[data-decision]").forEach(
        (b) => b.classList.toggle("sel", b.dataset.decision === d));
    });
    const done = Object.keys(decisions).length;
    document.getElementById("progress").textContent =
      "decided " + done + " / " + cases.length + " - case " + (current + 1);
  }
  function go(i) {
    current = Math.max(0, Math.min(cases.length - 1, i));
    show();
    if (cards[current]) { cards[current].scrollIntoView({block: "nearest"}); }
  }
  function decide(i, decision) {
    decisions[i] = decision;
    localStorage.setItem(pageKey, JSON.stringify(decisions));
    let next = i + 1;
    while (next < cases.length && decisions[next]) { next++; }
    go(next < cases.length ? next : i);
  }
  function cell(v) { return v === null || v === undefined ? "" : String(v); }
  function csv() {
    const head = "tomo_id,kind,decision,cand_z,cand_y,cand_x,score,label_z,label_y,label_x";
    const rows = cases.map((c, i) => {
      const cand = c.candidate || [null, null, null];
      const label = c.label || [null, null, null];
      return [c.tomo_id, c.kind, decisions[i] || "skip", ...cand, c.score, ...label].map(cell).join(",");
    });
    return [head, ...rows].join("\n") + "\n";
  }
  function exportCsv() {
    const url = URL.createObjectURL(new Blob([csv()], {type: "text/csv"}));
    const a = document.createElement("a");
    a.href = url;
    a.download = "review_decisions.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    const k = ev.key;
    if (KEYS[k]) { decide(current, KEYS[k]); }
    else if (k === "ArrowRight" || k === "j" || k === "n") { go(current + 1); }
    else if (k === "ArrowLeft" || k === "h" || k === "p") { go(current - 1); }
    else if (k === "e") { exportCsv(); }
    else { return; }
    ev.preventDefault();
  });
  cards.forEach((card, i) => {
    card.addEventListener("click", (ev) => {
      const d = ev.target.dataset ? ev.target.dataset.decision : undefined;
      if (d) { decide(i, d); } else { go(i); }
    });
  });
  document.getElementById("export").addEventListener("click", exportCsv);
  show();
  document.body.dataset.ready = "1";
})();
"""
