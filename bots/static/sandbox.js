// The rehearsal sandbox page (/sandbox): the only page that needs JavaScript. It talks to /sandbox/api/... with
// fetch and polls for the bot's answers and the mails. Everything shown is set with textContent (never innerHTML),
// so whatever the bot or a user wrote is displayed as text.
"use strict";
(function () {
  const POLL_MS = 700;
  const people = document.getElementById("person");
  const chat = document.getElementById("chat");
  const inbox = document.getElementById("inbox");
  const status = document.getElementById("status");
  let current = null; // {platform, id}
  let lastChat = "";
  let lastInbox = "";

  async function call(method, path, body) {
    const options = {method: method, headers: {}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const data = await response.json();
    if (!response.ok) { throw new Error(data.error || response.status); }
    return data;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function platformName(p) { return p === "line" ? "LINE" : "Telegram"; }

  async function loadPeople(select) {
    const data = await call("GET", "/sandbox/api/people");
    people.replaceChildren();
    for (const person of data.people) {
      const option = el("option", null, person.name + "(" + platformName(person.platform) + ")");
      option.value = person.platform + "|" + person.id;
      people.appendChild(option);
    }
    if (select) { people.value = select.platform + "|" + select.id; }
    choose();
  }

  function choose() {
    const value = people.value;
    if (!value) { current = null; return; }
    const cut = value.indexOf("|");
    current = {platform: value.slice(0, cut), id: value.slice(cut + 1)};
    lastChat = "";
    refreshChat();
  }

  async function press(button) {
    try {
      await call("POST", "/sandbox/api/press", {platform: current.platform, id: current.id, data: button.data,
                                               label: button.label, message_id: button.message_id});
      status.textContent = "";
    } catch (e) { status.textContent = "ボタンを押せませんでした: " + e.message; }
    refreshChat();
  }

  function renderChat(messages) {
    chat.replaceChildren();
    for (const m of messages) {
      const item = el("li", "bubble " + (m.from === "bot" ? "from-bot" : "from-you"));
      item.appendChild(el("span", "who", m.from === "bot" ? "ボット" : "あなた"));
      item.appendChild(el("p", "text", m.text));
      if (m.buttons.length || (m.links && m.links.length)) {
        const row = el("div", "buttons");
        for (const b of m.buttons) {
          const button = el("button", null, b.label);
          button.type = "button";
          button.addEventListener("click", function () { press(b); });
          row.appendChild(button);
        }
        for (const link of (m.links || [])) {
          const a = el("a", "button", link.label);
          a.href = link.url;
          a.rel = "noopener noreferrer";
          row.appendChild(a);
        }
        item.appendChild(row);
      }
      chat.appendChild(item);
    }
    chat.scrollTop = chat.scrollHeight; // the newest message in view, as in a chat app
  }

  async function refreshChat() {
    if (!current) { return; }
    const who = current;
    const params = new URLSearchParams({platform: who.platform, id: who.id});
    const data = await call("GET", "/sandbox/api/chat?" + params.toString());
    if (who !== current) { return; }
    const fingerprint = JSON.stringify(data.messages);
    if (fingerprint !== lastChat) { lastChat = fingerprint; renderChat(data.messages); }
  }

  async function refreshInbox() {
    const data = await call("GET", "/sandbox/api/inbox");
    const fingerprint = JSON.stringify(data.mails);
    if (fingerprint === lastInbox) { return; }
    lastInbox = fingerprint;
    inbox.replaceChildren();
    if (!data.mails.length) { inbox.appendChild(el("p", "note", "まだメールはありません。")); }
    for (const mail of data.mails) {
      const box = el("article", "mail");
      box.appendChild(el("h3", null, mail.subject));
      box.appendChild(el("p", "note", "宛先: " + mail.to + " / " + mail.date));
      box.appendChild(el("pre", null, mail.text));
      inbox.appendChild(box);
    }
  }

  document.getElementById("new-person").addEventListener("submit", async function (event) {
    event.preventDefault();
    const form = event.target;
    try {
      const name = document.getElementById("person-name");
      const platform = form.querySelector("input[name=platform]:checked").value;
      const person = await call("POST", "/sandbox/api/people", {platform: platform, name: name.value});
      name.value = "";
      status.textContent = "";
      await loadPeople(person);
    } catch (e) { status.textContent = "追加できませんでした: " + e.message; }
  });

  document.getElementById("say").addEventListener("submit", async function (event) {
    event.preventDefault();
    const input = document.getElementById("message");
    if (!current) { status.textContent = "先に名前を入れて「はじめる」を押してください。"; return; }
    try {
      await call("POST", "/sandbox/api/say", {platform: current.platform, id: current.id, text: input.value});
      input.value = "";
      status.textContent = "";
    } catch (e) { status.textContent = "送れませんでした: " + e.message; }
    refreshChat();
  });

  people.addEventListener("change", choose);

  async function poll() {
    try { await refreshChat(); await refreshInbox(); } catch (e) { /* the next round tries again */ }
    window.setTimeout(poll, POLL_MS);
  }
  loadPeople(null).then(poll, poll);
})();
