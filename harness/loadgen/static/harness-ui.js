// The harness in Locust's web UI page (served at ./harness/static/harness-ui.js, added to Locust's page).
//
// 1. The start form shows what a run would be: whenever the form is shown anew (the page, or New after a
//    run) or its scenario field changes, its users, ramp and time scale are those of the scenario named in
//    it (with the command line's options), from ./harness/form-defaults. Locust's own page would keep the
//    last run's values, which the next run would then take for changes.
// 2. The Throttling tab draws PTU utilization per deployment (the backends' utilization header, read by
//    the load generator from every answer) as a chart above its table, from ./harness/throttling.
(function () {
  "use strict";

  const POLL_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
  const seenForms = new WeakSet();

  function setInput(form, name, value) {
    const input = form.querySelector(`input[name="${name}"]`);
    if (!input || value === null || value === undefined) return;
    // Locust's fields are React inputs: set through the native setter and tell React about it
    const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
    setter.call(input, String(value));
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  async function fillForm(form) {
    const scenario = form.querySelector('input[name="scenario"]');
    const query = scenario ? `?scenario=${encodeURIComponent(scenario.value)}` : "";
    const answer = await fetch(`./harness/form-defaults${query}`).then((r) => r.json()).catch(() => null);
    if (!answer || !answer.ok) return;
    setInput(form, "userCount", answer.users);
    setInput(form, "spawnRate", answer.spawn_rate);
    setInput(form, "timeScale", answer.time_scale);
    form.dataset.harnessFilled = "true";
  }

  function watchForms() {
    for (const form of document.querySelectorAll("form")) {
      const scenario = form.querySelector('input[name="scenario"]');
      if (seenForms.has(form) || !scenario || !form.querySelector('input[name="userCount"]')) continue;
      seenForms.add(form);
      scenario.addEventListener("change", () => fillForm(form));
      fillForm(form);
    }
  }

  function throttlingTable() {
    for (const table of document.querySelectorAll("table")) {
      const head = table.querySelector("thead");
      if (head && /Panel/.test(head.textContent) && /Detail/.test(head.textContent)) return table;
    }
    return null;
  }

  function drawChart(container, deployments) {
    container.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = "PTU utilization per deployment (% after each answer, per wall second)";
    container.appendChild(title);
    if (!deployments.length) {
      const note = document.createElement("p");
      note.textContent = "no PTU deployment has answered yet (standard deployments send no utilization)";
      container.appendChild(note);
      return;
    }
    const width = 640, height = 200, pad = 30;
    const points = deployments.flatMap((d) => d.series);
    const t0 = Math.min(...points.map((p) => p[0]));
    const t1 = Math.max(t0 + 1, ...points.map((p) => p[0]));
    const top = Math.max(100, ...points.map((p) => p[1]));
    const x = (t) => pad + ((t - t0) / (t1 - t0)) * (width - 2 * pad);
    const y = (v) => height - pad - (v / top) * (height - 2 * pad);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "PTU utilization chart");
    const line = (x1, y1, x2, y2, colour, dash) => {
      const l = document.createElementNS(SVG, "line");
      Object.entries({ x1, y1, x2, y2, stroke: colour }).forEach(([k, v]) => l.setAttribute(k, String(v)));
      if (dash) l.setAttribute("stroke-dasharray", "4 3");
      svg.appendChild(l);
    };
    line(pad, y(0), width - pad, y(0), "#888");
    line(pad, y(100), width - pad, y(100), "#888", true);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", "2");
    label.setAttribute("y", String(y(100) + 4));
    label.setAttribute("font-size", "10");
    label.textContent = "100%";
    svg.appendChild(label);
    deployments.forEach((d, i) => {
      const path = document.createElementNS(SVG, "polyline");
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", COLOURS[i % COLOURS.length]);
      path.setAttribute("stroke-width", "2");
      path.setAttribute("points", d.series.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
      path.setAttribute("data-deployment", `${d.backend} / ${d.deployment}`);
      svg.appendChild(path);
    });
    container.appendChild(svg);
    const legend = document.createElement("ul");
    deployments.forEach((d, i) => {
      const item = document.createElement("li");
      item.style.color = COLOURS[i % COLOURS.length];
      item.textContent = `${d.backend} / ${d.deployment}: ${d.latest}% now`;
      legend.appendChild(item);
    });
    container.appendChild(legend);
  }

  async function refreshChart() {
    const table = throttlingTable();
    if (!table) return;
    let container = document.getElementById("harness-ptu-chart");
    if (!container || container.nextElementSibling !== table) {
      if (container) container.remove();
      container = document.createElement("div");
      container.id = "harness-ptu-chart";
      table.parentNode.insertBefore(container, table);
    }
    const snapshot = await fetch("./harness/throttling").then((r) => r.json()).catch(() => null);
    if (snapshot) drawChart(container, snapshot.ptu_utilization || []);
  }

  new MutationObserver(watchForms).observe(document.documentElement, { childList: true, subtree: true });
  watchForms();
  setInterval(refreshChart, POLL_MS);
})();
