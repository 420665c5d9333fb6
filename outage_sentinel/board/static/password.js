"use strict";
document.getElementById("password-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const res = await fetch("/api/password", {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf},
    body: JSON.stringify({current: form.current.value, new: form.new.value}),
  });
  const data = await res.json();
  if (res.ok) { window.location = "/login"; } else {
    document.getElementById("password-error").textContent = data.error;
  }
});
