"use strict";
// A liaison's answer per transformer area; the page shows the incident as it now stands.
const root = document.getElementById("field");
for (const button of document.querySelectorAll("button.answer")) {
  button.addEventListener("click", async () => {
    const item = button.closest("li");
    const res = await fetch(`/f/${root.dataset.token}/answer`, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({area: item.dataset.area, answer: button.dataset.answer,
                            note: document.getElementById("field-note").value}),
    });
    const data = await res.json();
    const failed = document.getElementById("field-failed");
    if (!res.ok) { failed.textContent = data.error; failed.hidden = false; return; }
    failed.hidden = true;
    for (const b of item.querySelectorAll("button.answer")) b.classList.toggle("chosen", b === button);
    for (const area of data.areas) {
      const li = root.querySelector(`li[data-area="${CSS.escape(area.id)}"]`);
      if (!li) continue;
      li.className = `area-${area.state}`;
      li.querySelector(".state").textContent = area.state === "off" ? "停电" : area.state === "unconfirmed" ? "停电记录已结束，是否来电待确认" : area.state === "continued" ? "仍停电，已转为新的停电记录" : area.state === "back" ? "已恢复" : "未列入本次停电";
    }
    document.getElementById("field-done").hidden = false;
  });
}

// An optional photo, with the area it shows; it goes to the command centre only.
document.getElementById("field-photo")?.addEventListener("click", async () => {
  const file = document.getElementById("field-photo-file").files[0];
  const failed = document.getElementById("field-failed");
  if (!file) { failed.textContent = "请先选择照片"; failed.hidden = false; return; }
  const area = encodeURIComponent(document.getElementById("field-photo-area").value);
  const res = await fetch(`/f/${root.dataset.token}/photo?area=${area}`, {method: "POST", headers: {"Content-Type": file.type || "application/octet-stream"}, body: file});
  const data = await res.json();
  if (!res.ok) { failed.textContent = data.error; failed.hidden = false; return; }
  failed.hidden = true;
  document.getElementById("field-done").hidden = false;
});
