// The sign-in form (a static file: the Content-Security-Policy allows no inline script).
"use strict";
document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    }),
  });
  if (r.ok) location.href = "/";
  else document.getElementById("error").textContent = "用户名或密码错误 / wrong user name or password";
});
