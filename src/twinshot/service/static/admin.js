// The admin page: with the admin key, enroll people, list them and remove them.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const keyInput = $("key"), loginStatus = $("login-status"), enrollStatus = $("enroll-status");
  const listStatus = $("list-status"), photos = $("photos"), chosen = $("chosen");
  const body = document.querySelector("#people tbody"), empty = $("empty"), count = $("count");
  const STORE = "twinshot.adminKey"; // sessionStorage: forgotten when the tab closes

  keyInput.value = window.sessionStorage.getItem(STORE) || "";
  const key = () => keyInput.value.trim();

  function cell(content) {
    const td = document.createElement("td");
    td.textContent = content;
    return td;
  }

  function removeButton(name) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button danger small";
    button.textContent = "Remove";
    button.dataset.identity = name;
    button.addEventListener("click", async () => {
      if (button.dataset.armed !== "1") {
        button.dataset.armed = "1";
        button.textContent = "Confirm removal";
        return;
      }
      button.disabled = true;
      try {
        const answer = await twinshotApi("/v1/identities/" + encodeURIComponent(name), { method: "DELETE", key: key() });
        showStatus(listStatus, "Removed " + answer.identity + " (" + answer.removed + " photo(s)); nothing of them is kept.", "ok");
      } catch (err) {
        showStatus(listStatus, "Error: " + err.message, "error");
      }
      await refresh();
    });
    return button;
  }

  async function refresh() {
    if (!key()) return;
    try {
      const answer = await twinshotApi("/v1/identities?limit=10000", { key: key() });
      body.replaceChildren(
        ...answer.identities.map((p) => {
          const tr = document.createElement("tr");
          tr.dataset.identity = p.name;
          const action = document.createElement("td");
          action.className = "right";
          action.appendChild(removeButton(p.name));
          tr.append(cell(p.name), cell(String(p.references)), cell(p.created.replace("T", " ").replace("+00:00", " UTC")), action);
          return tr;
        })
      );
      count.textContent = "(" + answer.n_identities + ")";
      empty.hidden = answer.n_identities > 0;
      showStatus(loginStatus, "Connected.", "ok");
    } catch (err) {
      body.replaceChildren();
      showStatus(loginStatus, "Error: " + err.message, "error");
    }
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    window.sessionStorage.setItem(STORE, key());
    refresh();
  });
  $("refresh").addEventListener("click", refresh);

  photos.addEventListener("change", () => {
    const n = photos.files.length;
    chosen.textContent = n === 0 ? "No photo chosen" : n === 1 ? photos.files[0].name : n + " photos";
  });

  $("enroll").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (!key()) {
      showStatus(enrollStatus, "Enter the admin key first.", "error");
      return;
    }
    if (!name || photos.files.length === 0) {
      showStatus(enrollStatus, "Give a name and at least one photo.", "error");
      return;
    }
    const form = new FormData();
    for (const file of photos.files) form.append("images", file, file.name);
    const mode = $("mode").value;
    $("enroll-button").disabled = true;
    showStatus(enrollStatus, "Enrolling…", "info");
    try {
      const answer = await twinshotApi("/v1/identities/" + encodeURIComponent(name) + "/images?mode=" + mode, {
        method: "POST", key: key(), body: form,
      });
      showStatus(enrollStatus, "Enrolled " + answer.identity + " with " + answer.references + " photo(s).", "ok");
      $("enroll").reset();
      chosen.textContent = "No photo chosen";
    } catch (err) {
      showStatus(enrollStatus, "Error: " + err.message, "error");
    } finally {
      $("enroll-button").disabled = false;
    }
    await refresh();
  });

  if (key()) refresh();
})();
