// Darter manager console: a dependency-free single-page app over the REST API
// (docs/manager.md), served by the manager itself at /console/.
//
// Layout: the API client and the session; DOM and form helpers; one section
// per view (clusters, members, "which cluster?", users and tokens); start-up.
// Everything the server sends is rendered with textContent, never innerHTML.
// The sign-in token lives in sessionStorage only; passwords and tokens never
// go into a URL, the log or the DOM (except the new personal access token,
// which is shown once by design).
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "darter.console.token";
const VIEWS = ["clusters", "members", "match", "users", "trust"];
const ROLES = ["guest", "root"];
const MEMBERS_REFRESH_MS = 5000;

const RULES = {
  cluster_id: "the cluster ID in the peer's own config",
  cidr: "a CIDR in the cluster's scopes contains the IP (longest prefix wins)",
  hostname: "a hostname regex in the cluster's scopes matches",
  idc: "the IDC is one of the cluster's IDCs",
  location: "the location shares the longest prefix with the cluster's",
  default: "no scope matched, so the default cluster",
};

const state = {
  me: null, // the signed-in User
  clusters: [], // the last cluster list, for names in other views
  membersTimer: null,
};

// ------------------------------------------------------------- API client

class ApiError extends Error {
  constructor(status, code, field, message) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

// Calls the API with the session's token. Resolves to the parsed JSON (null
// for 204); rejects with an ApiError carrying the error JSON's code and field.
// A 401 while signed in ends the session.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch {
    throw new ApiError(0, "unavailable", null, "cannot reach the manager");
  }
  const data = await readJson(res);
  if (res.ok) return data;
  const err = (data && data.error) || {};
  const message = err.message || res.statusText || `HTTP ${res.status}`;
  const error = new ApiError(res.status, err.code || `http_${res.status}`, err.field || null, message);
  if (res.status === 401 && token) {
    endSession(`Your session has ended (${message}). Please sign in again.`);
  }
  throw error;
}

async function readJson(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// "message (404 not_found)", or the message alone for a network failure. The
// field at fault leads unless the message names it already.
function describe(error) {
  if (!(error instanceof ApiError)) return String(error);
  const named =
    error.field && !error.message.includes(error.field) ? `${error.field}: ${error.message}` : error.message;
  return error.status ? `${named} (${error.status} ${error.code})` : named;
}

// ---------------------------------------------------------------- session

function isRoot() {
  return Boolean(state.me && state.me.role === "root");
}

async function signIn(event) {
  event.preventDefault();
  const password = $("signin-password");
  const body = { name: $("signin-name").value.trim(), password: password.value };
  showMessage($("signin-error"), "");
  showMessage($("signin-message"), "");
  sessionStorage.removeItem(TOKEN_KEY);
  try {
    const answer = await busy($("signin-submit"), () => api("POST", "/users/signin", body));
    sessionStorage.setItem(TOKEN_KEY, answer.token);
    await loadMe();
  } catch (e) {
    showMessage($("signin-error"), e.status === 401 ? "Wrong name or password." : describe(e));
  } finally {
    password.value = "";
  }
}

async function signOut() {
  try {
    await api("POST", "/users/signout");
  } catch {
    // The token is dropped below either way.
  }
  endSession("Signed out.");
}

// Asks who the token belongs to (the role decides which controls show), then
// opens the console.
async function loadMe() {
  state.me = await api("GET", "/users/me");
  $("whoami").textContent = `${state.me.name} (${state.me.role})`;
  document.body.dataset.role = state.me.role;
  for (const node of document.querySelectorAll(".write")) node.hidden = !isRoot();
  $("signin-view").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  resetViews();
  $("password-username").value = state.me.name; // for password managers
  route();
}

function endSession(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  state.clusters = [];
  stopMembersRefresh();
  clearSecret();
  delete document.body.dataset.role;
  for (const view of VIEWS) $(`${view}-view`).hidden = true;
  $("nav").hidden = true;
  $("session").hidden = true;
  $("signin-view").hidden = false;
  showMessage($("signin-message"), message);
  $("signin-name").focus();
}

// Forgets what a previous session left on screen.
function resetViews() {
  for (const box of document.querySelectorAll(".error, .ok")) showMessage(box, "");
  for (const form of document.querySelectorAll("form")) {
    if (form.id !== "signin-form") form.reset();
    clearInvalid(form);
  }
  $("cluster-form").hidden = true;
  $("match-result").hidden = true;
}

// ---------------------------------------------------------------- routing

function currentView() {
  const view = location.hash.slice(1);
  return VIEWS.includes(view) ? view : "clusters";
}

function route() {
  if (!state.me) return;
  const view = currentView();
  for (const v of VIEWS) $(`${v}-view`).hidden = v !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    const active = link.dataset.view === view;
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  stopMembersRefresh();
  if (view !== "users") clearSecret();
  if (view !== "trust") clearJoinSecret();
  if (view === "clusters") loadClusters();
  if (view === "members") startMembersRefresh();
  if (view === "users") loadUsersView();
  if (view === "trust") loadTrust();
}

// ------------------------------------------------------------ DOM helpers

function $(id) {
  return document.getElementById(id);
}

// Builds an element. Props: `class`, `dataset`, `on<event>` handlers, DOM
// properties (textContent, type, value, disabled...), else attributes.
// Children are nodes or strings (which become text nodes).
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function button(text, className, onclick) {
  return el("button", { type: "button", class: className, textContent: text, onclick });
}

function showMessage(box, text) {
  box.textContent = text;
  box.hidden = !text;
}

function fillTable(table, rows, emptyText) {
  const body = table.tBodies[0];
  if (rows.length) {
    body.replaceChildren(...rows);
    return;
  }
  const cells = table.tHead.rows[0].cells.length;
  body.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: cells, textContent: emptyText })));
}

// Disables `control` while `work` runs.
async function busy(control, work) {
  control.disabled = true;
  try {
    return await work();
  } finally {
    control.disabled = false;
  }
}

function formatTime(value) {
  if (!value) return "never";
  return value.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
}

function age(value) {
  const seconds = Math.round((Date.now() - Date.parse(value)) / 1000);
  if (Number.isNaN(seconds)) return "";
  if (seconds < 5) return "just now";
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function lines(text) {
  return text.split("\n").map((s) => s.trim()).filter(Boolean);
}

function clusterLabel(id) {
  const cluster = state.clusters.find((c) => c.id === id);
  return cluster ? `${cluster.name} (#${id})` : `#${id}`;
}

// ------------------------------------------------------------ form errors

// The input an API error's `field` names: `scopes.cidrs[1]` and
// `scopes.cidrs.1` mean the `scopes.cidrs` textarea, an unknown sub-field its
// nearest named parent.
function fieldInput(form, field) {
  let name = field.replace(/\[\d+\]/g, "");
  for (;;) {
    const input = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (input) return input;
    const dot = name.lastIndexOf(".");
    if (dot < 0) return null;
    name = name.slice(0, dot);
  }
}

function clearInvalid(form) {
  for (const input of form.querySelectorAll(".invalid")) {
    input.classList.remove("invalid");
    input.removeAttribute("aria-invalid");
  }
}

function showFormError(form, box, error) {
  clearInvalid(form);
  const input = error.field ? fieldInput(form, error.field) : null;
  if (input) {
    input.classList.add("invalid");
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  showMessage(box, describe(error));
}

function clearFormError(form, box) {
  clearInvalid(form);
  showMessage(box, "");
}

// ---------------------------------------------------------------- clusters

async function loadClusters() {
  showMessage($("clusters-error"), "");
  try {
    state.clusters = await api("GET", "/clusters");
    renderClusters();
  } catch (e) {
    showMessage($("clusters-error"), describe(e));
  }
}

function renderClusters() {
  const rows = state.clusters.map((c) =>
    el(
      "tr",
      { dataset: { clusterId: c.id, name: c.name } },
      el("td", { textContent: String(c.id) }),
      el(
        "td",
        {},
        el("strong", { textContent: c.name }),
        c.description ? el("div", { class: "muted", textContent: c.description }) : null,
      ),
      el("td", { textContent: c.is_default ? "default" : "" }),
      el("td", { class: "scopes" }, ...scopesSummary(c.scopes || {})),
      el("td", { textContent: configSummary(c.config || {}) }),
      el("td", { class: "row-actions" }, ...clusterActions(c)),
    ),
  );
  fillTable($("clusters-table"), rows, "No clusters yet.");
}

function scopesSummary(s) {
  const parts = [
    ["idc", s.idc],
    ["location", s.location],
    ["cidrs", (s.cidrs || []).join(", ")],
    ["hostnames", (s.hostnames || []).join(", ")],
  ].filter(([, value]) => value);
  if (!parts.length) return [el("span", { class: "muted", textContent: "none" })];
  return parts.map(([key, value]) => el("div", {}, el("span", { class: "key", textContent: `${key} ` }), value));
}

function configSummary(c) {
  return `parents ${c.candidate_parent_limit} · back-to-source ${c.back_to_source_limit} · load ${c.load_limit}`;
}

function clusterActions(cluster) {
  if (!isRoot()) return [];
  return [
    button("Helm values", "values", () => openClusterValues(cluster)),
    button("Edit", "edit", () => openClusterForm(cluster)),
    button("Delete", "delete danger", () => deleteCluster(cluster)),
  ];
}

// ------------------------------------------------ values to install a cluster

// Opens the panel that makes the Helm values of `cluster`'s release.
function openClusterValues(cluster) {
  const form = $("cluster-values-form");
  clearFormError(form, $("cluster-values-error"));
  state.valuesCluster = cluster;
  $("cluster-values-name").textContent = `${cluster.name} (#${cluster.id})`;
  $("cluster-values-addr").value = `${location.hostname}:65003`;
  $("cluster-values-box").hidden = true;
  $("cluster-values-yaml").textContent = "";
  $("cluster-form").hidden = true;
  form.hidden = false;
}

// The first of `a|b|c` (a scope's alternatives; a host reports one).
function firstAlternative(scope) {
  return (scope || "").split("|")[0].trim();
}

// The values file of the chart (charts/darter/values.yaml) for a release
// that is `cluster`, joining the manager at `addr` with `tokens`.
function helmValues(cluster, addr, pin, tokens) {
  const q = (v) => JSON.stringify(String(v)); // a YAML double-quoted string
  const scopes = cluster.scopes || {};
  return [
    `# helm install darter-${cluster.name} charts/darter --namespace darter -f values.yaml`,
    `# Cluster ${cluster.name} (#${cluster.id}) of the manager at ${addr}.`,
    "manager:",
    "  enabled: false",
    `clusterID: ${Number(cluster.id)}`,
    "host:",
    `  idc: ${q(firstAlternative(scopes.idc))}`,
    `  location: ${q(scopes.location || "")}`,
    "externalManager:",
    `  addr: ${q(addr)}`,
    `  caCertHash: ${q(pin)}`,
    "tls:",
    "  joinTokens:",
    "    tokens:",
    `      scheduler: ${q(tokens.scheduler)}`,
    `      seed_peer: ${q(tokens.seed_peer)}`,
    `      peer: ${q(tokens.peer)}`,
    "",
  ].join("\n");
}

async function makeClusterValues(event) {
  event.preventDefault();
  const form = $("cluster-values-form");
  const box = $("cluster-values-error");
  clearFormError(form, box);
  const cluster = state.valuesCluster;
  const addr = $("cluster-values-addr").value.trim();
  if (!/^[^\s:]+:\d{1,5}$/.test(addr)) {
    showFormError(form, box, new ApiError(0, "", "addr", "HOST:PORT, e.g. manager.example.com:65003"));
    return;
  }
  const ttl = $("cluster-values-ttl").value.trim();
  try {
    await busy($("cluster-values-submit"), async () => {
      const ca = await api("GET", "/ca");
      const tokens = {};
      for (const role of ["scheduler", "seed_peer", "peer"]) {
        const body = { role, cluster_id: Number(cluster.id), description: `helm values for cluster ${cluster.name}` };
        if (ttl) body.ttl = ttl;
        tokens[role] = (await api("POST", "/join-tokens", body)).join_token;
      }
      $("cluster-values-yaml").textContent = helmValues(cluster, addr, ca.ca_cert_hash, tokens);
      $("cluster-values-box").hidden = false;
    });
  } catch (e) {
    showFormError(form, box, e);
  }
}

// Opens the form empty (a new cluster, with the store's default config) or
// filled from `cluster`.
function openClusterForm(cluster) {
  const form = $("cluster-form");
  const c = cluster || { name: "", description: "", is_default: false, scopes: {} };
  const config = c.config || { candidate_parent_limit: 4, back_to_source_limit: 1, load_limit: 32 };
  const scopes = c.scopes || {};
  clearFormError(form, $("cluster-error"));
  $("cluster-form-title").textContent = cluster ? `Edit cluster ${cluster.name}` : "New cluster";
  $("cluster-id").value = cluster ? String(cluster.id) : "";
  $("cluster-name").value = c.name;
  $("cluster-description").value = c.description || "";
  $("cluster-is-default").checked = Boolean(c.is_default);
  $("cluster-candidate-parent-limit").value = config.candidate_parent_limit;
  $("cluster-back-to-source-limit").value = config.back_to_source_limit;
  $("cluster-load-limit").value = config.load_limit;
  $("cluster-idc").value = scopes.idc || "";
  $("cluster-location").value = scopes.location || "";
  $("cluster-cidrs").value = (scopes.cidrs || []).join("\n");
  $("cluster-hostnames").value = (scopes.hostnames || []).join("\n");
  form.hidden = false;
  $("cluster-name").focus();
}

// The form as a NewCluster. An empty limit is left out (the server's default
// applies); anything else that is not a whole number goes as typed, so the
// server's error names the field.
function readClusterForm() {
  const config = {};
  for (const [key, id] of [
    ["candidate_parent_limit", "cluster-candidate-parent-limit"],
    ["back_to_source_limit", "cluster-back-to-source-limit"],
    ["load_limit", "cluster-load-limit"],
  ]) {
    const value = $(id).value.trim();
    if (value) config[key] = /^-?\d+$/.test(value) ? Number(value) : value;
  }
  return {
    name: $("cluster-name").value.trim(),
    description: $("cluster-description").value.trim(),
    is_default: $("cluster-is-default").checked,
    config,
    scopes: {
      idc: $("cluster-idc").value.trim(),
      location: $("cluster-location").value.trim(),
      cidrs: lines($("cluster-cidrs").value),
      hostnames: lines($("cluster-hostnames").value),
    },
  };
}

async function saveCluster(event) {
  event.preventDefault();
  const form = $("cluster-form");
  const box = $("cluster-error");
  clearFormError(form, box);
  const id = $("cluster-id").value;
  const body = readClusterForm();
  try {
    const save = () => (id ? api("PUT", `/clusters/${Number(id)}`, body) : api("POST", "/clusters", body));
    await busy($("cluster-submit"), save);
    form.hidden = true;
    await loadClusters();
  } catch (e) {
    showFormError(form, box, e);
  }
}

async function deleteCluster(cluster) {
  if (!window.confirm(`Delete cluster "${cluster.name}"?`)) return;
  showMessage($("clusters-error"), "");
  try {
    await api("DELETE", `/clusters/${Number(cluster.id)}`);
    await loadClusters();
  } catch (e) {
    showMessage($("clusters-error"), `Cannot delete "${cluster.name}": ${describe(e)}`);
  }
}

// ----------------------------------------------------------------- members

function startMembersRefresh() {
  loadMembers();
  state.membersTimer = window.setInterval(() => {
    if (!document.hidden) loadMembers();
  }, MEMBERS_REFRESH_MS);
}

function stopMembersRefresh() {
  window.clearInterval(state.membersTimer);
  state.membersTimer = null;
}

function membersQuery() {
  const query = new URLSearchParams();
  if ($("members-cluster").value) query.set("cluster_id", $("members-cluster").value);
  if ($("members-state").value) query.set("state", $("members-state").value);
  const text = query.toString();
  return text ? `?${text}` : "";
}

async function loadMembers() {
  const query = membersQuery();
  try {
    const [clusters, schedulers, seedPeers] = await Promise.all([
      api("GET", "/clusters"),
      api("GET", `/schedulers${query}`),
      api("GET", `/seed-peers${query}`),
    ]);
    showMessage($("members-error"), "");
    state.clusters = clusters;
    fillClusterFilter();
    fillTable($("schedulers-table"), schedulers.map((m) => memberRow(m, "schedulers")), "No schedulers.");
    fillTable($("seed-peers-table"), seedPeers.map((m) => memberRow(m, "seed-peers")), "No seed peers.");
  } catch (e) {
    showMessage($("members-error"), describe(e));
  }
}

function fillClusterFilter() {
  const select = $("members-cluster");
  const selected = select.value;
  const options = state.clusters.map((c) => el("option", { value: String(c.id), textContent: `${c.name} (#${c.id})` }));
  select.replaceChildren(el("option", { value: "", textContent: "all" }), ...options);
  select.value = selected;
}

function address(m) {
  const host = String(m.ip).includes(":") ? `[${m.ip}]` : m.ip;
  const main = `${host}:${m.port}`;
  return m.download_port ? `${main} (download ${m.download_port})` : main;
}

function memberRow(m, resource) {
  const actions = [];
  if (isRoot() && m.state === "inactive") {
    actions.push(button("Delete", "delete danger", () => deleteMember(m, resource)));
  }
  return el(
    "tr",
    { dataset: { memberId: m.id, state: m.state } },
    el("td", { textContent: String(m.id) }),
    el("td", { textContent: m.hostname }),
    el("td", { textContent: address(m) }),
    el("td", { textContent: clusterLabel(m.cluster_id) }),
    el("td", { textContent: m.idc || "" }),
    el("td", { textContent: m.location || "" }),
    el("td", {}, el("span", { class: `state ${m.state}`, textContent: m.state })),
    el("td", { title: formatTime(m.last_keepalive_at), textContent: age(m.last_keepalive_at) }),
    el("td", { class: "row-actions" }, ...actions),
  );
}

async function deleteMember(member, resource) {
  if (!window.confirm(`Delete ${member.kind || "member"} ${member.hostname} (#${member.id})?`)) return;
  try {
    await api("DELETE", `/${resource}/${Number(member.id)}`);
    await loadMembers();
  } catch (e) {
    showMessage($("members-error"), `Cannot delete ${member.hostname}: ${describe(e)}`);
  }
}

// ---------------------------------------------------- which cluster? (match)

async function askMatch(event) {
  event.preventDefault();
  const form = $("match-form");
  clearInvalid(form);
  $("match-result").hidden = true; // no stale answer while asking
  const query = new URLSearchParams();
  for (const input of form.querySelectorAll("[data-field]")) {
    const value = input.value.trim();
    if (value) query.set(input.dataset.field, value);
  }
  try {
    const answer = await busy($("match-submit"), () => api("GET", `/match?${query}`));
    renderMatch(answer);
  } catch (e) {
    renderMatchError(form, e);
  }
}

function memberList(members) {
  if (!members || !members.length) return "none";
  return members.map((m) => `${m.hostname} ${address(m)}`).join(", ");
}

function definition(term, id, ...value) {
  return [el("dt", { textContent: term }), el("dd", { id }, ...value)];
}

function renderMatch(answer) {
  const result = $("match-result");
  const c = answer.cluster || {};
  result.dataset.state = "ok";
  result.replaceChildren(
    el("h3", {}, "This host gets cluster ", el("span", { id: "match-cluster", textContent: `${c.name} (#${c.id})` })),
    el(
      "dl",
      {},
      ...definition(
        "Rule",
        "match-rule-line",
        el("code", { id: "match-rule", textContent: answer.rule }),
        ` — ${RULES[answer.rule] || ""}`,
      ),
      ...definition("Matched", "match-detail", answer.detail || "—"),
      ...definition("Schedulers", "match-schedulers", memberList(answer.schedulers)),
      ...definition("Seed peers", "match-seed-peers", memberList(answer.seed_peers)),
    ),
  );
  result.hidden = false;
}

function renderMatchError(form, error) {
  const result = $("match-result");
  const input = error.field ? fieldInput(form, error.field) : null;
  if (input) {
    input.classList.add("invalid");
    input.setAttribute("aria-invalid", "true");
  }
  const noCluster = error.status === 404;
  const title = noCluster ? "No cluster for this host" : "Cannot answer";
  const hint = noCluster ? "Only clusters with at least one active scheduler are eligible: see Members." : "";
  result.dataset.state = "error";
  result.replaceChildren(
    el("h3", { textContent: title }),
    el("p", { id: "match-error", class: "error", textContent: describe(error) }),
    hint ? el("p", { class: "hint", textContent: hint }) : null,
  );
  result.hidden = false;
}

// --------------------------------------------------------- users and tokens

function loadUsersView() {
  loadTokens();
  loadUsers();
}

async function loadUsers() {
  try {
    const users = await api("GET", "/users");
    showMessage($("users-error"), "");
    fillTable($("users-table"), users.map(userRow), "No users.");
  } catch (e) {
    showMessage($("users-error"), describe(e));
  }
}

function userRow(user) {
  const self = state.me && user.id === state.me.id;
  const role = el("select", { class: "role", disabled: !isRoot(), "aria-label": `Role of ${user.name}` });
  for (const r of ROLES) role.append(el("option", { value: r, textContent: r }));
  role.value = user.role;
  role.addEventListener("change", () => changeRole(user, role));
  const actions = isRoot() && !self ? [button("Delete", "delete danger", () => deleteUser(user))] : [];
  return el(
    "tr",
    { dataset: { userId: user.id, name: user.name } },
    el("td", { textContent: String(user.id) }),
    el("td", { textContent: self ? `${user.name} (you)` : user.name }),
    el("td", {}, role),
    el("td", { textContent: formatTime(user.created_at) }),
    el("td", { class: "row-actions" }, ...actions),
  );
}

async function changeRole(user, select) {
  showMessage($("users-error"), "");
  const self = user.id === state.me.id;
  if (self && select.value !== "root" && !window.confirm("Give up your own root role?")) {
    select.value = user.role;
    return;
  }
  try {
    await busy(select, () => api("PATCH", `/users/${Number(user.id)}`, { role: select.value }));
    // Whoever changed their own role sees the console as that role now.
    if (self) await loadMe();
    else await loadUsers();
  } catch (e) {
    select.value = user.role;
    showMessage($("users-error"), `Cannot change the role of ${user.name}: ${describe(e)}`);
  }
}

async function deleteUser(user) {
  if (!window.confirm(`Delete user "${user.name}"?`)) return;
  showMessage($("users-error"), "");
  try {
    await api("DELETE", `/users/${Number(user.id)}`);
    await loadUsers();
  } catch (e) {
    showMessage($("users-error"), `Cannot delete ${user.name}: ${describe(e)}`);
  }
}

async function createUser(event) {
  event.preventDefault();
  const form = $("user-form");
  const box = $("user-error");
  clearFormError(form, box);
  const body = { name: $("user-name").value.trim(), password: $("user-password").value, role: $("user-role").value };
  try {
    await busy($("user-submit"), () => api("POST", "/users", body));
    form.reset();
    await loadUsers();
  } catch (e) {
    showFormError(form, box, e);
  }
}

async function changePassword(event) {
  event.preventDefault();
  const form = $("password-form");
  const box = $("password-error");
  clearFormError(form, box);
  showMessage($("password-ok"), "");
  const body = { old_password: $("password-old").value, new_password: $("password-new").value };
  try {
    await busy($("password-submit"), () => api("PUT", `/users/${Number(state.me.id)}/password`, body));
    form.reset();
    showMessage($("password-ok"), "Password changed.");
  } catch (e) {
    showFormError(form, box, e);
  }
}

async function loadTokens() {
  try {
    const tokens = await api("GET", "/personal-access-tokens");
    fillTable($("tokens-table"), tokens.map(tokenRow), "No tokens.");
  } catch (e) {
    showMessage($("token-error"), describe(e));
  }
}

function tokenRow(token) {
  return el(
    "tr",
    { dataset: { tokenId: token.id, name: token.name } },
    el("td", { textContent: token.name }),
    el("td", { textContent: formatTime(token.expires_at) }),
    el("td", { textContent: formatTime(token.created_at) }),
    el("td", { class: "row-actions" }, button("Delete", "delete danger", () => deleteToken(token))),
  );
}

async function createToken(event) {
  event.preventDefault();
  const form = $("token-form");
  const box = $("token-error");
  clearFormError(form, box);
  clearSecret();
  const body = { name: $("token-name").value.trim() };
  const expiresIn = $("token-expires-in").value.trim();
  if (expiresIn) body.expires_in = expiresIn;
  try {
    const created = await busy($("token-submit"), () => api("POST", "/personal-access-tokens", body));
    form.reset();
    $("token-secret").textContent = created.token;
    $("token-secret-box").hidden = false;
    await loadTokens();
  } catch (e) {
    showFormError(form, box, e);
  }
}

async function deleteToken(token) {
  if (!window.confirm(`Delete token "${token.name}"? Whatever uses it stops working.`)) return;
  showMessage($("token-error"), "");
  try {
    await api("DELETE", `/personal-access-tokens/${Number(token.id)}`);
    await loadTokens();
  } catch (e) {
    showMessage($("token-error"), `Cannot delete ${token.name}: ${describe(e)}`);
  }
}

async function copySecret() {
  const secret = $("token-secret");
  try {
    await navigator.clipboard.writeText(secret.textContent);
  } catch {
    // No clipboard (e.g. plain HTTP to a remote host): select it for Ctrl+C.
    window.getSelection().selectAllChildren(secret);
  }
}

// The new token's secret leaves the DOM as soon as the user is done with it.
function clearSecret() {
  $("token-secret").textContent = "";
  $("token-secret-box").hidden = true;
}

// ------------------------------------------------------------------ trust

async function loadTrust() {
  showMessage($("trust-error"), "");
  try {
    const [ca, certificates, clusters] = await Promise.all([
      api("GET", "/ca"),
      api("GET", "/certificates"),
      api("GET", "/clusters"),
    ]);
    state.clusters = clusters;
    $("trust-ca-pin").textContent = ca.ca_cert_hash;
    fillTable($("certificates-table"), certificates.map(certificateRow), "No certificates.");
    const select = $("join-token-cluster");
    select.replaceChildren(...clusters.map((c) => el("option", { value: String(c.id), textContent: `${c.name} (${c.id})` })));
    // Only root sees join tokens.
    if (isRoot()) {
      const tokens = await api("GET", "/join-tokens");
      fillTable($("join-tokens-table"), tokens.map(joinTokenRow), "No join tokens.");
    } else {
      fillTable($("join-tokens-table"), [], "Join tokens are for root.");
    }
  } catch (e) {
    showMessage($("trust-error"), describe(e));
  }
}

// A join token made with ttl "never" expires at the end of the year 9999
// (the manager's NEVER_EXPIRES).
const NEVER_EXPIRES = 253402300799999;

function tokenState(token) {
  if (token.revoked_at) return "revoked";
  if (token.expires_at <= Date.now()) return "expired";
  if (token.max_uses > 0 && token.uses >= token.max_uses) return "used up";
  return "live";
}

function joinTokenRow(token) {
  const live = !token.revoked_at;
  return el(
    "tr",
    { dataset: { joinToken: token.id, state: tokenState(token) } },
    el("td", {}, el("code", { textContent: token.id })),
    el("td", { textContent: token.role }),
    el("td", { textContent: clusterLabel(token.cluster_id) }),
    el("td", { textContent: token.max_uses > 0 ? `${token.uses} / ${token.max_uses}` : `${token.uses}` }),
    el("td", { textContent: token.expires_at >= NEVER_EXPIRES ? "never" : formatTime(new Date(token.expires_at).toISOString()) }),
    el("td", { textContent: tokenState(token) }),
    el("td", { textContent: token.description }),
    el("td", { class: "row-actions" }, ...(live ? [button("Revoke", "delete danger", () => revokeJoinToken(token))] : [])),
  );
}

function certificateRow(cert) {
  const live = !cert.revoked_at;
  const actions = isRoot() && live && cert.role !== "manager"
    ? [button("Revoke", "delete danger", () => revokeCertificate(cert))]
    : [];
  return el(
    "tr",
    { dataset: { serial: cert.serial, state: live ? "valid" : "revoked" } },
    el("td", {}, el("code", { textContent: cert.serial.slice(0, 16) })),
    el("td", { textContent: cert.role }),
    el("td", { textContent: cert.role === "manager" ? "all" : clusterLabel(cert.cluster_id) }),
    el("td", { textContent: cert.host }),
    el("td", { textContent: cert.token_id || "" }),
    el("td", { textContent: formatTime(new Date(cert.not_after).toISOString()) }),
    el("td", { textContent: live ? "valid" : "revoked" }),
    el("td", { class: "row-actions" }, ...actions),
  );
}

async function createJoinToken(event) {
  event.preventDefault();
  const form = $("join-token-form");
  const box = $("join-token-error");
  clearFormError(form, box);
  clearJoinSecret();
  const body = {
    role: $("join-token-role").value,
    cluster_id: Number($("join-token-cluster").value),
    max_uses: Number($("join-token-max-uses").value || 0),
  };
  const ttl = $("join-token-ttl").value.trim();
  if (ttl) body.ttl = ttl;
  const description = $("join-token-description").value.trim();
  if (description) body.description = description;
  try {
    const created = await busy($("join-token-submit"), () => api("POST", "/join-tokens", body));
    form.reset();
    $("join-token-secret").textContent =
      `tls:\n  join_token: ${created.join_token}\n  ca_cert_hash: ${created.ca_cert_hash}\n`;
    $("join-token-secret-box").hidden = false;
    await loadTrust();
  } catch (e) {
    showFormError(form, box, e);
  }
}

async function revokeJoinToken(token) {
  if (!window.confirm(`Revoke join token ${token.id}? Every member it enrolled loses its certificate.`)) return;
  try {
    await api("DELETE", `/join-tokens/${encodeURIComponent(token.id)}`);
    await loadTrust();
  } catch (e) {
    showMessage($("trust-error"), `Cannot revoke ${token.id}: ${describe(e)}`);
  }
}

async function revokeCertificate(cert) {
  if (!window.confirm(`Revoke the certificate of ${cert.role} ${cert.host}? It is refused at its next connection.`)) return;
  try {
    await api("DELETE", `/certificates/${encodeURIComponent(cert.serial)}`);
    await loadTrust();
  } catch (e) {
    showMessage($("trust-error"), `Cannot revoke ${cert.serial}: ${describe(e)}`);
  }
}

// The join token leaves the DOM as soon as the user is done with it.
function clearJoinSecret() {
  $("join-token-secret").textContent = "";
  $("join-token-secret-box").hidden = true;
}

// ----------------------------------------------------------------- start-up

function wire() {
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  $("clusters-refresh").addEventListener("click", loadClusters);
  $("clusters-new").addEventListener("click", () => openClusterForm(null));
  $("cluster-form").addEventListener("submit", saveCluster);
  $("cluster-cancel").addEventListener("click", () => ($("cluster-form").hidden = true));
  $("cluster-values-form").addEventListener("submit", makeClusterValues);
  $("cluster-values-close").addEventListener("click", () => ($("cluster-values-form").hidden = true));
  $("cluster-values-copy").addEventListener("click", () => navigator.clipboard.writeText($("cluster-values-yaml").textContent));
  $("members-refresh").addEventListener("click", loadMembers);
  $("members-cluster").addEventListener("change", loadMembers);
  $("members-state").addEventListener("change", loadMembers);
  $("match-form").addEventListener("submit", askMatch);
  $("password-form").addEventListener("submit", changePassword);
  $("token-form").addEventListener("submit", createToken);
  $("token-secret-copy").addEventListener("click", copySecret);
  $("token-secret-dismiss").addEventListener("click", clearSecret);
  $("user-form").addEventListener("submit", createUser);
  $("join-token-form").addEventListener("submit", createJoinToken);
  $("join-token-secret-dismiss").addEventListener("click", clearJoinSecret);
  // Editing a field the server complained about clears its highlight.
  document.addEventListener("input", (event) => {
    event.target.classList.remove("invalid");
    event.target.removeAttribute("aria-invalid");
  });
}

async function start() {
  wire();
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    endSession("");
    return;
  }
  try {
    await loadMe();
  } catch (e) {
    if (e.status !== 401) endSession(`Cannot load your account: ${describe(e)}`);
  }
}

start();
