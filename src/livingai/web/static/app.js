// livingai web UI: progressive enhancement only (every page works without it).
// Agent data is hostile: it is only ever set with textContent, never as HTML.
"use strict";

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

// A node's decoded state, fetched when its <details data-state-url> is first opened.
function loadState(details) {
  const pre = details.querySelector("pre");
  if (!pre || details.dataset.loaded) {
    return;
  }
  details.dataset.loaded = "1";
  pre.textContent = "loading…";
  fetch(details.dataset.stateUrl, { headers: { Accept: "application/json" } })
    .then((response) => response.json().then((body) => ({ ok: response.ok, body })))
    .then(({ ok, body }) => {
      if (!ok) {
        pre.textContent = "error: " + (typeof body.detail === "string" ? body.detail : pretty(body.detail));
      } else if (body.kind === "json") {
        pre.textContent = pretty(body.value);
      } else if (body.kind === "text") {
        pre.textContent = body.value;
      } else if (body.kind === "binary") {
        pre.textContent = body.bytes + " bytes, binary (base64" + (body.truncated ? ", first bytes" : "") + "):\n" + body.base64;
      } else if (body.kind === "corrupt") {
        pre.textContent = "corrupt: " + body.error;
      } else {
        pre.textContent = "no state";
      }
    })
    .catch((error) => {
      pre.textContent = "error: " + error;
      delete details.dataset.loaded;
    });
}

function watchStates(root) {
  root.querySelectorAll("details[data-state-url]").forEach((details) => {
    details.addEventListener("toggle", () => {
      if (details.open) {
        loadState(details);
      }
    });
  });
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function jsonDetails(label, value) {
  const details = document.createElement("details");
  details.className = "json";
  const summary = document.createElement("summary");
  summary.textContent = label;
  const pre = document.createElement("pre");
  pre.textContent = pretty(value);
  details.append(summary, pre);
  return details;
}

function findNode(id) {
  for (const item of document.querySelectorAll("#steps li[data-node-id]")) {
    if (item.dataset.nodeId === id) {
      return item;
    }
  }
  return null;
}

function statusClass(element, status) {
  for (const name of [...element.classList]) {
    if (name.startsWith("status-")) {
      element.classList.remove(name);
    }
  }
  element.classList.add("status-" + String(status).toLowerCase());
}

// A step as the server draws it, from a `node` event; replaced whole when it changes.
function nodeItem(node) {
  const item = document.createElement("li");
  item.dataset.nodeId = node.id;
  item.dataset.status = node.status;
  item.className = "step kind-" + node.kind + (node.in_doubt ? " in-doubt" : "");
  const line = document.createElement("div");
  line.className = "line";
  if (node.position !== null) {
    line.append(span("position", String(node.position)));
  }
  line.append(span("name", node.name), span("kind", node.kind), span("type", node.type));
  if (node.agent) {
    line.append(span("agent", "by " + node.agent));
  }
  const status = span("status", node.status);
  statusClass(status, node.status);
  line.append(status);
  if (node.side_effect) {
    line.append(span("effect", "side effect"));
  }
  if (node.in_doubt) {
    line.append(span("doubt", "IN DOUBT"));
  }
  for (const flag of node.flags) {
    line.append(span("flag", flag));
  }
  if (node.model) {
    line.append(span("model", node.model));
  }
  if (node.prompt_tokens !== null || node.completion_tokens !== null) {
    line.append(span("tokens", (node.prompt_tokens || 0) + "+" + (node.completion_tokens || 0) + " tokens"));
  }
  if (node.latency_ms !== null) {
    line.append(span("latency", node.latency_ms.toFixed(1) + " ms"));
  }
  item.append(line);
  if (node.error) {
    const error = document.createElement("p");
    error.className = "error";
    error.textContent = node.error.type + ": " + node.error.message;
    item.append(error);
  }
  item.append(jsonDetails("input", node.input), jsonDetails("output", node.output));
  if (node.state_url) {
    const details = document.createElement("details");
    details.className = "json";
    details.dataset.stateUrl = (document.body.dataset.root || "") + node.state_url;
    const summary = document.createElement("summary");
    summary.textContent = "state";
    const pre = document.createElement("pre");
    pre.className = "state";
    pre.textContent = "(open to load)";
    details.append(summary, pre);
    item.append(details);
  }
  item.append(jsonDetails("metadata", node.metadata));
  watchStates(item);
  return item;
}

function placeNode(node) {
  const fresh = nodeItem(node);
  const old = findNode(node.id);
  if (old) {
    const children = old.querySelector(":scope > ol");
    if (children) {
      fresh.append(children);
    }
    old.replaceWith(fresh);
    return;
  }
  const parent = node.parent_id ? findNode(node.parent_id) : null;
  let list = document.getElementById("steps");
  if (parent) {
    list = parent.querySelector(":scope > ol");
    if (!list) {
      list = document.createElement("ol");
      parent.append(list);
    }
  }
  list.append(fresh);
}

function showStatus(update) {
  const status = document.getElementById("status");
  if (status) {
    status.textContent = update.status;
    statusClass(status, update.status);
  }
  const result = document.querySelector("#result pre");
  if (result && update.finished) {
    result.textContent = pretty(update.result);
  }
}

function followLive() {
  const url = document.body.dataset.eventsUrl;
  if (!url || !window.EventSource) {
    return;
  }
  const live = document.getElementById("live");
  const source = new EventSource(url);
  source.addEventListener("node", (event) => placeNode(JSON.parse(event.data)));
  source.addEventListener("status", (event) => showStatus(JSON.parse(event.data)));
  source.addEventListener("end", () => {
    source.close();
    if (live) {
      live.textContent = "finished";
      live.classList.add("done");
    }
  });
}

// The replay form asks for a step and a value only in the modes that use them.
function shapeReplayForm() {
  const form = document.getElementById("replay");
  if (!form) {
    return;
  }
  const mode = form.querySelector("select[name=mode]");
  const step = form.querySelector("[name=step]");
  const value = form.querySelector("textarea[name=value]");
  const update = () => {
    step.closest("label").hidden = mode.value === "mock_tools";
    value.closest("label").hidden = mode.value !== "counterfactual";
  };
  mode.addEventListener("change", update);
  update();
}

document.addEventListener("DOMContentLoaded", () => {
  watchStates(document);
  followLive();
  shapeReplayForm();
});
