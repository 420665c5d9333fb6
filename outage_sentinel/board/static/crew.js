"use strict";
// The crew's steps; each goes through the same lifecycle code as the operator's.
const crew = document.getElementById("crew");
for (const button of document.querySelectorAll("#crew button[data-step]")) {
  button.addEventListener("click", async () => {
    const step = button.dataset.step;
    const body = {step, note: document.getElementById("crew-note").value};
    if (step === "fault_found") {
      body.device = [...document.getElementById("crew-device").selectedOptions].map((o) => o.value).join(",");
      body.cause = document.getElementById("crew-cause").value;
      // Shown once the page refused the devices (they do not feed every area off): ticked,
      // the crew's finding is sent anyway and the command centre told which areas.
      body.device_anyway = document.getElementById("crew-device-anyway").checked;
    } else if (step === "restore") {
      body.transformers = [...document.querySelectorAll("#crew-areas input:checked")].map((i) => i.value);
    } else if (step === "arrive" && navigator.geolocation) {
      // The position if the crew allows it; the step goes without it otherwise.
      const where = await new Promise((resolve) => navigator.geolocation.getCurrentPosition(
        (p) => resolve(p.coords), () => resolve(null), {timeout: 3000, maximumAge: 60000}));
      if (where) { body.lat = where.latitude; body.lon = where.longitude; }
    } else if (step === "etr") {
      body.time = document.getElementById("crew-etr").value.replace("T", " ");
    }
    const res = await fetch(`/c/${crew.dataset.token}/step`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const data = await res.json();
    const failed = document.getElementById("crew-failed");
    const done = document.getElementById("crew-done");
    const anyway = document.getElementById("crew-anyway");
    if (!res.ok) {
      failed.textContent = data.error; failed.hidden = false; done.hidden = true;
      if (step === "fault_found" && res.status === 409) { anyway.hidden = false; }
      return;
    }
    failed.hidden = true;
    if (step === "fault_found") {
      anyway.hidden = true;
      document.getElementById("crew-device-anyway").checked = false;
    }
    done.textContent = `已记录：${button.textContent}`;
    done.hidden = false;
    document.querySelector("#crew-stage b").textContent = data.stage;
    const list = document.getElementById("crew-areas");
    list.replaceChildren(...data.off.map((a) => {
      const li = document.createElement("li");
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox"; box.value = a.id;
      label.append(box, ` ${a.name}`);
      li.append(label);
      return li;
    }));
  });
}

document.getElementById("crew-photo")?.addEventListener("click", async () => {
  const file = document.getElementById("crew-photo-file").files[0];
  const failed = document.getElementById("crew-failed");
  const done = document.getElementById("crew-done");
  if (!file) { failed.textContent = "请先选择照片"; failed.hidden = false; return; }
  const res = await fetch(`/c/${crew.dataset.token}/photo`, {method: "POST", headers: {"Content-Type": file.type || "application/octet-stream"}, body: file});
  const data = await res.json();
  if (!res.ok) { failed.textContent = data.error; failed.hidden = false; return; }
  failed.hidden = true;
  done.textContent = "已记录：现场照片";
  done.hidden = false;
});
