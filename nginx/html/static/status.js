// The status page's only script: loaded from this origin (CSP script-src 'self'),
// no inline code, no eval. Builds DOM nodes with textContent, never innerHTML.
"use strict";

const REFRESH_MS = 5000;
const TIMEOUT_MS = 4000;

function setState(cell, state) {
  cell.textContent = state;
  cell.className = "state " + state;
  cell.dataset.state = state;
}

function describeDependencies(report) {
  const deps = report.dependencies || {};
  return Object.keys(deps).sort().map((name) => {
    const dep = deps[name];
    let text = name + ": " + dep.state;
    if (dep.error) text += " (" + dep.error + ")";
    return text;
  }).join("; ");
}

async function refreshRow(row) {
  const stateCell = row.children[1];
  const depsCell = row.children[2];
  const checkedCell = row.children[3];
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const response = await fetch(row.dataset.url, { cache: "no-store", signal: controller.signal });
    let report = {};
    try { report = await response.json(); } catch (e) { report = {}; }
    const state = report.status || (response.ok ? "healthy" : "unreachable");
    setState(stateCell, state);
    depsCell.textContent = describeDependencies(report) || ("HTTP " + response.status);
  } catch (error) {
    setState(stateCell, "unreachable");
    depsCell.textContent = String(error.name === "AbortError" ? "timed out" : error.message);
  } finally {
    clearTimeout(timer);
    checkedCell.textContent = new Date().toLocaleTimeString();
  }
}

function overallState(states) {
  if (states.some((s) => s === "unhealthy" || s === "unreachable")) return "unhealthy";
  if (states.some((s) => s === "degraded" || s === "disabled" || s === "unknown")) return "degraded";
  return "healthy";
}

async function refresh() {
  const rows = Array.from(document.querySelectorAll("tr[data-url]"));
  await Promise.all(rows.map(refreshRow));
  const states = Array.from(document.querySelectorAll("#services td.state")).map((c) => c.dataset.state);
  const overall = document.getElementById("overall");
  setState(overall, overallState(states));
  overall.textContent = "stack: " + overall.dataset.state;
  document.body.dataset.refreshed = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  setInterval(refresh, REFRESH_MS);
});
