// The service map page: polls the agent's GET /v1/servicemap once a second
// and draws its graph with cytoscape (loaded before this file as the global
// `cytoscape`) and its newest flows in a table. Plain browser JavaScript, no
// build step. Everything shown is set as text (textContent), never as HTML.
//
// For tests and the curious: window.xlbServiceMap holds the cytoscape
// instance (`cy`) and `updates`, the number of maps drawn so far.
'use strict';

(function () {
  var POLL_MS = 1000;
  var WINDOW = '10s';
  var LAST = 50;

  var $ = function (id) {
    return document.getElementById(id);
  };
  var params = new URLSearchParams(location.search);
  var state = { namespace: params.get('namespace') || '', shape: '', seq: 0, drawn: 0, updates: 0, timer: 0 };

  var cy = cytoscape({
    container: $('graph'),
    minZoom: 0.2,
    maxZoom: 4,
    style: [
      {
        selector: 'node',
        style: {
          label: 'data(label)',
          'text-wrap': 'wrap',
          'text-valign': 'bottom',
          'text-margin-y': 4,
          'font-size': 11,
          width: 26,
          height: 26,
          'border-width': 1,
          'border-color': '#57606a',
        },
      },
      // Frontends on the left with their labels to their left, backends on the right with theirs to the right.
      { selector: 'node[kind = "frontend"]', style: { shape: 'round-diamond', 'background-color': '#fb8f44', 'text-valign': 'center', 'text-halign': 'left', 'text-margin-x': -4, 'text-justification': 'right' } },
      { selector: 'node[kind = "service"]', style: { shape: 'round-rectangle', 'background-color': '#54aeff', width: 40, 'font-weight': 'bold' } },
      { selector: 'node[kind = "backend"]', style: { shape: 'ellipse', 'background-color': '#4ac26b', 'text-valign': 'center', 'text-halign': 'right', 'text-margin-x': 4, 'text-justification': 'left' } },
      { selector: 'node[kind = "backend"][state != "ready"]', style: { 'background-color': '#d0d7de', 'border-style': 'dashed' } },
      { selector: 'node[kind = "frontend"][!served]', style: { 'background-color': '#d0d7de', 'border-style': 'dashed' } },
      {
        selector: 'edge',
        style: {
          label: 'data(label)',
          'text-wrap': 'wrap',
          'curve-style': 'bezier',
          'target-arrow-shape': 'triangle',
          'line-color': '#8c959f',
          'target-arrow-color': '#8c959f',
          width: function (e) {
            return 1 + Math.min(5, Math.log2(1 + (e.data('flowRate') || 0)));
          },
          'font-size': 10,
          'text-background-color': '#ffffff',
          'text-background-opacity': 0.85,
          'text-background-padding': 2,
        },
      },
      { selector: 'edge[flows > 0]', style: { 'line-color': '#1a7f37', 'target-arrow-color': '#1a7f37' } },
      { selector: 'edge[drops > 0]', style: { 'line-color': '#cf222e', 'target-arrow-color': '#cf222e', color: '#cf222e' } },
      { selector: ':selected', style: { 'overlay-color': '#0969da', 'overlay-opacity': 0.2 } },
    ],
  });
  window.xlbServiceMap = {
    cy: cy,
    get updates() {
      return state.updates;
    },
  };

  function rate(r) {
    return r >= 10 ? String(Math.round(r)) : r.toFixed(1);
  }

  // Idle edges carry no label: the map stays readable with many frontends.
  function edgeLabel(e, flowsOn) {
    if (!flowsOn || (e.flows === 0 && e.drops === 0)) return '';
    var lines = [];
    if (e.flows > 0) lines.push(rate(e.flowRate) + ' flows/s');
    if (e.drops > 0) lines.push(e.drops + ' dropped');
    return lines.join('\n');
  }

  function endpoint(ip, port, name) {
    return ip + ':' + port + (name ? ' (' + name + ')' : '');
  }

  function cell(tr, text, title) {
    var td = document.createElement('td');
    td.textContent = text;
    if (title) td.title = title;
    tr.appendChild(td);
  }

  function drawNamespaces(namespaces) {
    var select = $('namespace');
    var want = [''].concat(namespaces);
    if (state.namespace && want.indexOf(state.namespace) < 0) want.push(state.namespace);
    var have = Array.prototype.map.call(select.options, function (o) {
      return o.value;
    });
    if (have.join('\n') !== want.join('\n')) {
      select.textContent = '';
      want.forEach(function (ns) {
        var o = document.createElement('option');
        o.value = ns;
        o.textContent = ns || 'all namespaces';
        select.appendChild(o);
      });
    }
    select.value = state.namespace;
  }

  function drawGraph(map) {
    var flowsOn = map.flows.enabled;
    var elements = map.nodes
      .map(function (n) {
        return { group: 'nodes', data: n };
      })
      .concat(
        map.edges.map(function (e) {
          return { group: 'edges', data: Object.assign({}, e, { label: edgeLabel(e, flowsOn) }) };
        }),
      );
    var shape = elements
      .map(function (el) {
        return el.data.id;
      })
      .join('\n');
    if (shape !== state.shape) {
      // Nodes or edges came or went: draw anew and lay out again.
      state.shape = shape;
      cy.batch(function () {
        cy.elements().remove();
        cy.add(elements);
      });
      var roots = cy.nodes('[kind = "frontend"]');
      cy.layout({ name: 'breadthfirst', directed: true, direction: 'rightward', roots: roots.length ? roots : undefined, spacingFactor: 1.1, padding: 20 }).run();
    } else {
      // Same graph: new counts only, the layout (and what a user moved) stays.
      cy.batch(function () {
        elements.forEach(function (el) {
          cy.getElementById(el.data.id).data(el.data);
        });
      });
    }
  }

  function drawFlows(flows) {
    $('flows-off').hidden = flows.enabled;
    var tbody = document.querySelector('#flows tbody');
    tbody.textContent = '';
    var recent = flows.enabled ? flows.recent : [];
    recent.forEach(function (f) {
      var tr = document.createElement('tr');
      tr.className = f.verdict;
      tr.dataset.source = f.source.ip + ':' + f.source.port;
      tr.dataset.event = f.closed ? 'close' : f.verdict === 'DROPPED' ? 'drop' : 'new';
      cell(tr, f.time.slice(11, 23), f.time);
      cell(tr, f.node);
      cell(tr, endpoint(f.source.ip, f.source.port, f.source.pod));
      cell(tr, f.destination.ip + ':' + f.destination.port + '/' + f.protocol);
      cell(tr, f.destination.service || '');
      cell(tr, f.backend ? endpoint(f.backend.ip, f.backend.port, f.backend.pod) : '', f.backend && f.backend.node ? 'on ' + f.backend.node : '');
      cell(tr, f.closed ? `${f.verdict}, closed` : f.verdict);
      cell(tr, f.dropReason || '');
      tbody.appendChild(tr);
    });
    $('no-flows').hidden = !flows.enabled || recent.length > 0;
  }

  function drawStatus(map) {
    $('node').textContent = map.node ? '· node ' + map.node : '';
    var services = map.nodes.filter(function (n) {
      return n.kind === 'service';
    }).length;
    var parts = [services + (services === 1 ? ' service' : ' services')];
    if (map.flows.enabled) {
      $('window').textContent = String(map.flows.windowSeconds);
      parts.push('last ' + map.flows.windowSeconds + ' s: ' + map.flows.forwarded + ' forwarded, ' + map.flows.dropped + ' dropped');
      if (map.flows.suppressed !== '0') parts.push(map.flows.suppressed + ' events suppressed by the rate limit');
    } else {
      parts.push('flow events off');
    }
    parts.push('updated ' + new Date().toLocaleTimeString());
    var status = $('status');
    status.className = '';
    status.textContent = parts.join(' · ');
  }

  function showDetails(data) {
    var dl = $('details');
    dl.textContent = '';
    var keys = ['id', 'kind', 'service', 'addr', 'port', 'protocol', 'frontendKind', 'served', 'pod', 'node', 'state', 'ports', 'flows', 'drops'];
    keys.forEach(function (k) {
      if (data[k] === undefined) return;
      var dt = document.createElement('dt');
      dt.textContent = k;
      var dd = document.createElement('dd');
      dd.textContent = Array.isArray(data[k]) ? data[k].join(', ') : String(data[k]);
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
  }
  cy.on('tap', 'node, edge', function (evt) {
    showDetails(evt.target.data());
  });

  function refresh() {
    var seq = ++state.seq;
    var url = new URL('../v1/servicemap', location.href);
    url.searchParams.set('window', WINDOW);
    url.searchParams.set('last', String(LAST));
    if (state.namespace) url.searchParams.set('namespace', state.namespace);
    return fetch(url, { cache: 'no-store' })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(body.message || 'HTTP ' + res.status);
          return body;
        });
      })
      .then(function (map) {
        // An answer overtaken by a later request (the filter changed) is dropped.
        if (seq < state.drawn) return;
        state.drawn = seq;
        drawNamespaces(map.namespaces);
        drawGraph(map);
        drawFlows(map.flows);
        drawStatus(map);
        state.updates++;
      })
      .catch(function (e) {
        var status = $('status');
        status.className = 'error';
        status.textContent = 'cannot read the service map: ' + e.message;
      });
  }

  function loop() {
    refresh().then(function () {
      state.timer = setTimeout(loop, POLL_MS);
    });
  }

  $('namespace').addEventListener('change', function (evt) {
    state.namespace = evt.target.value;
    var q = new URLSearchParams(location.search);
    if (state.namespace) q.set('namespace', state.namespace);
    else q.delete('namespace');
    var search = q.toString();
    history.replaceState(null, '', location.pathname + (search ? '?' + search : ''));
    refresh();
  });

  loop();
})();
