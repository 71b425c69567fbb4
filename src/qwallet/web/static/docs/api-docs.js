// The API documentation page (/docs/api): renders /openapi.json. No inline code (its CSP).
"use strict";
(function () {
  var specUrl = document.body.getAttribute("data-spec-url") || "/openapi.json";
  var METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

  // ---------------------------------------------------------------- helpers

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function slug(text) {
    return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  }

  // A JSON number kept as written ("230.00"), when the browser exposes the source text.
  function RawNumber(text) { this.text = text; }

  function parseJson(text) {
    return JSON.parse(text, function (key, value, context) {
      if (typeof value === "number" && context && typeof context.source === "string") {
        return new RawNumber(context.source);
      }
      return value;
    });
  }

  function toPlain(value) {
    if (value instanceof RawNumber) return Number(value.text);
    if (Array.isArray(value)) return value.map(toPlain);
    if (value && typeof value === "object") {
      var out = {};
      Object.keys(value).forEach(function (k) { out[k] = toPlain(value[k]); });
      return out;
    }
    return value;
  }

  function stringify(value, indent) {
    indent = indent || "";
    var inner = indent + "  ";
    if (value instanceof RawNumber) return value.text;
    if (Array.isArray(value)) {
      if (!value.length) return "[]";
      return "[\n" + value.map(function (v) { return inner + stringify(v, inner); }).join(",\n") +
        "\n" + indent + "]";
    }
    if (value && typeof value === "object") {
      var keys = Object.keys(value);
      if (!keys.length) return "{}";
      return "{\n" + keys.map(function (k) {
        return inner + JSON.stringify(k) + ": " + stringify(value[k], inner);
      }).join(",\n") + "\n" + indent + "}";
    }
    return JSON.stringify(value);
  }

  function inline(text) {
    var parts = String(text).split(/(`[^`]*`)/);
    return parts.map(function (part) {
      if (/^`[^`]*`$/.test(part)) return "<code>" + esc(part.slice(1, -1)) + "</code>";
      return esc(part)
        .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
        .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, function (m, label, url) {
          return /^(https?:|\/|#)/.test(url) ? '<a href="' + url + '">' + label + "</a>" : m;
        });
    }).join("");
  }

  function tableRow(line) {
    return line.trim().replace(/^\||\|$/g, "").split("|").map(function (c) { return c.trim(); });
  }

  // Markdown for the document's descriptions: headings, paragraphs, lists, tables, code.
  function markdown(text) {
    var lines = String(text || "").split("\n");
    var html = [];
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      if (!line.trim()) { i++; continue; }
      var heading = /^(#{1,6})\s+(.*)$/.exec(line);
      if (heading) {
        var level = Math.min(heading[1].length + 2, 6);
        html.push("<h" + level + ">" + inline(heading[2]) + "</h" + level + ">");
        i++;
      } else if (/^\s*\|/.test(line)) {
        var rows = [];
        while (i < lines.length && /^\s*\|/.test(lines[i])) rows.push(lines[i++]);
        var head = tableRow(rows[0]);
        var body = rows.slice(1).filter(function (r) { return !/^\s*\|?[\s:|-]+\|?\s*$/.test(r); });
        html.push("<table><thead><tr>" + head.map(function (c) { return "<th>" + inline(c) + "</th>"; }).join("") +
          "</tr></thead><tbody>" + body.map(function (r) {
            return "<tr>" + tableRow(r).map(function (c) { return "<td>" + inline(c) + "</td>"; }).join("") + "</tr>";
          }).join("") + "</tbody></table>");
      } else if (/^\s*[-*]\s+/.test(line)) {
        var items = [];
        while (i < lines.length && /^\s*[-*]\s+/.test(lines[i])) {
          items.push(lines[i++].replace(/^\s*[-*]\s+/, ""));
        }
        html.push("<ul>" + items.map(function (t) { return "<li>" + inline(t) + "</li>"; }).join("") + "</ul>");
      } else if (/^```/.test(line)) {
        var code = [];
        i++;
        while (i < lines.length && !/^```/.test(lines[i])) code.push(lines[i++]);
        i++;
        html.push("<pre><code>" + esc(code.join("\n")) + "</code></pre>");
      } else {
        var para = [];
        while (i < lines.length && lines[i].trim() && !/^(#|\s*\||\s*[-*]\s|```)/.test(lines[i])) {
          para.push(lines[i++]);
        }
        html.push("<p>" + inline(para.join(" ")) + "</p>");
      }
    }
    return html.join("\n");
  }

  // ---------------------------------------------------------------- the document

  function render(specText) {
    var raw = parseJson(specText);
    var spec = toPlain(raw);

    function lookup(ref, doc) {
      var node = doc || spec;
      ref.replace(/^#\//, "").split("/").forEach(function (seg) {
        node = node[seg.replace(/~1/g, "/").replace(/~0/g, "~")];
      });
      return node;
    }

    function deref(node) {
      while (node && node.$ref) node = lookup(node.$ref);
      return node;
    }

    function schemaName(ref) { return ref.split("/").pop(); }

    function typeOf(schema) {
      if (!schema) return "";
      if (schema.$ref) {
        var name = schemaName(schema.$ref);
        return '<a href="#schema-' + slug(name) + '">' + esc(name) + "</a>";
      }
      if (schema.oneOf) return "one of " + schema.oneOf.map(typeOf).join(" | ");
      if (schema.anyOf) return "any of " + schema.anyOf.map(typeOf).join(" | ");
      var type = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "any");
      if (type === "array" && schema.items) type = "array of " + typeOf(schema.items);
      return esc(type) + (schema.format ? " <span class=\"muted\">(" + esc(schema.format) + ")</span>" : "");
    }

    function constraints(schema) {
      var s = deref(schema) || {};
      var out = [];
      if (s.enum) out.push("one of " + s.enum.map(function (v) { return "<code>" + esc(JSON.stringify(v)) + "</code>"; }).join(", "));
      if (s.format) out.push("format " + esc(s.format));
      if (s.pattern) out.push("pattern <code>" + esc(s.pattern) + "</code>");
      if (s.minLength !== undefined) out.push("length ≥ " + s.minLength);
      if (s.maxLength !== undefined) out.push("length ≤ " + s.maxLength);
      if (s.minimum !== undefined) out.push("≥ " + s.minimum);
      if (s.exclusiveMinimum !== undefined) out.push("&gt; " + s.exclusiveMinimum);
      if (s.additionalProperties === false) out.push("no other fields");
      return out.join("; ");
    }

    function propertiesTable(schema) {
      var s = deref(schema);
      if (!s || !s.properties) return "";
      var required = s.required || [];
      var rows = Object.keys(s.properties).map(function (name) {
        var prop = s.properties[name];
        var target = deref(prop) || {};
        var description = prop.description || target.description || "";
        return "<tr><td><code>" + esc(name) + "</code></td><td>" + typeOf(prop) + "</td><td>" +
          (required.indexOf(name) >= 0 ? "yes" : "no") + "</td><td>" + constraints(prop) +
          "</td><td>" + markdown(description) + "</td></tr>";
      });
      return "<table><thead><tr><th>field</th><th>type</th><th>required</th><th>rules</th>" +
        "<th>description</th></tr></thead><tbody>" + rows.join("") + "</tbody></table>" +
        (s.additionalProperties === false ? '<p class="muted">No other fields are allowed.</p>' : "");
    }

    function examplesHtml(media, rawMedia) {
      var out = [];
      if (media.example !== undefined) {
        out.push("<h5>Example</h5><pre><code>" + esc(typeof media.example === "string" ? media.example : stringify(rawMedia.example)) + "</code></pre>");
      }
      Object.keys(media.examples || {}).forEach(function (key) {
        var ex = media.examples[key];
        var rawEx = rawMedia.examples[key];
        out.push("<h5>" + esc(ex.summary || key) + "</h5>" + (ex.description ? markdown(ex.description) : "") +
          "<pre><code>" + esc(stringify(rawEx.value)) + "</code></pre>");
      });
      return out.join("");
    }

    function mediaHtml(content, rawContent) {
      return Object.keys(content || {}).map(function (type) {
        var media = content[type];
        var html = "<p>Content type <code>" + esc(type) + "</code>, schema " + typeOf(media.schema) + "</p>";
        var s = media.schema || {};
        if (s.oneOf) {
          // The first alternative is the answer of this operation; the others (the error
          // body) are shared and described once under Schemas.
          html += "<p>" + typeOf(s.oneOf[0]) + ":</p>" + propertiesTable(s.oneOf[0]) +
            '<p class="muted">or ' + s.oneOf.slice(1).map(typeOf).join(", ") + "</p>";
        } else {
          html += propertiesTable(s);
        }
        return html + examplesHtml(media, rawContent[type]);
      }).join("");
    }

    function rawResponse(response, rawResponseNode) {
      return response.$ref ? lookup(response.$ref, raw) : rawResponseNode;
    }

    var nav = [];
    var main = [];
    var info = spec.info || {};
    main.push("<h1>" + esc(info.title || "API") + "</h1>");
    main.push('<p class="muted">Version ' + esc(info.version || "") + " · OpenAPI " + esc(spec.openapi) +
      ' · <a href="' + esc(specUrl) + '">' + esc(specUrl) + "</a></p>");
    if (info.summary) main.push("<p>" + inline(info.summary) + "</p>");
    if (spec.servers && spec.servers.length) {
      main.push("<p>Servers: " + spec.servers.map(function (s) {
        return "<code>" + esc(s.url) + "</code>" + (s.description ? " (" + esc(s.description) + ")" : "");
      }).join(", ") + "</p>");
    }
    main.push('<section id="overview">' + markdown(info.description) + "</section>");
    nav.push('<h2>Overview</h2><ul><li><a href="#overview">Introduction</a></li></ul>');

    // Operations grouped by their first tag, in the order of the document's tags.
    var groups = {};
    var order = (spec.tags || []).map(function (t) { return t.name; });
    Object.keys(spec.paths || {}).forEach(function (path) {
      var item = spec.paths[path];
      METHODS.forEach(function (method) {
        var op = item[method];
        if (!op) return;
        var tag = (op.tags && op.tags[0]) || "Other";
        if (order.indexOf(tag) < 0) order.push(tag);
        (groups[tag] = groups[tag] || []).push({ path: path, method: method, op: op,
          raw: raw.paths[path][method] });
      });
    });

    order.forEach(function (tag) {
      var ops = groups[tag] || [];
      if (!ops.length) return;
      var tagInfo = (spec.tags || []).filter(function (t) { return t.name === tag; })[0] || {};
      main.push('<h2 id="tag-' + slug(tag) + '">' + esc(tag) + "</h2>" + markdown(tagInfo.description));
      nav.push("<h2>" + esc(tag) + "</h2><ul>");
      ops.forEach(function (entry) {
        var op = entry.op;
        var id = "op-" + slug(op.operationId || entry.method + entry.path);
        nav.push('<li><a href="#' + id + '"><span class="method ' + entry.method + '">' + esc(entry.method) +
          "</span>" + esc(entry.path) + "</a></li>");
        var html = ['<section class="op" id="' + id + '"><h3><span class="method ' + entry.method + '">' +
          esc(entry.method) + "</span><code>" + esc(entry.path) + "</code></h3>"];
        if (op.summary) html.push("<p><strong>" + inline(op.summary) + "</strong></p>");
        html.push(markdown(op.description));
        var security = op.security || spec.security || [];
        html.push("<p>Authentication: " + (security.length ? security.map(function (req) {
          return Object.keys(req).map(function (name) {
            var scheme = (spec.components.securitySchemes || {})[name] || {};
            return "<code>" + esc(name) + "</code> (" + esc(scheme.scheme || scheme.type || "") + ")";
          }).join(" + ");
        }).join(" or ") : "none") + "</p>");
        var params = (op.parameters || []).map(deref);
        if (params.length) {
          html.push("<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>required</th>" +
            "<th>description</th></tr></thead><tbody>" + params.map(function (p) {
              return "<tr><td><code>" + esc(p.name) + "</code></td><td>" + esc(p.in) + "</td><td>" +
                (p.required ? "yes" : "no") + "</td><td>" + markdown(p.description) + "</td></tr>";
            }).join("") + "</tbody></table>");
        }
        if (op.requestBody) {
          var body = deref(op.requestBody);
          html.push("<h4>Request body" + (body.required ? "" : " (optional)") + "</h4>" +
            mediaHtml(body.content, entry.raw.requestBody.content));
        }
        html.push("<h4>Responses</h4>");
        Object.keys(op.responses || {}).forEach(function (status) {
          var response = deref(op.responses[status]);
          var rawResp = rawResponse(op.responses[status], entry.raw.responses[status]);
          var headers = Object.keys(response.headers || {});
          html.push('<h5><span class="status ' + (/^[23]/.test(status) ? "ok" : "bad") + '">' + esc(status) +
            "</span> " + inline(response.description || "") + "</h5>" +
            (headers.length ? '<p class="muted">Headers: ' + headers.map(function (h) {
              return "<code>" + esc(h) + "</code>";
            }).join(", ") + "</p>" : "") +
            mediaHtml(response.content, rawResp.content || {}));
        });
        html.push("</section>");
        main.push(html.join("\n"));
      });
      nav.push("</ul>");
    });

    // Schemas.
    var schemas = (spec.components && spec.components.schemas) || {};
    main.push('<h2 id="schemas">Schemas</h2>');
    nav.push("<h2>Schemas</h2><ul>");
    Object.keys(schemas).forEach(function (name) {
      var s = schemas[name];
      var rawSchema = raw.components.schemas[name];
      nav.push('<li><a href="#schema-' + slug(name) + '">' + esc(name) + "</a></li>");
      var html = ['<section id="schema-' + slug(name) + '"><h3>' + esc(name) +
        (s.title && s.title !== name ? ' <span class="muted">— ' + esc(s.title) + "</span>" : "") + "</h3>"];
      html.push("<p>Type: " + typeOf(s) + (constraints(s) ? " · " + constraints(s) : "") + "</p>");
      html.push(markdown(s.description));
      html.push(propertiesTable(s));
      (rawSchema.examples || []).forEach(function (ex) {
        html.push("<h5>Example</h5><pre><code>" + esc(stringify(ex)) + "</code></pre>");
      });
      html.push("</section>");
      main.push(html.join("\n"));
    });
    nav.push("</ul>");

    document.title = (info.title || "API") + " — documentation";
    document.getElementById("nav").innerHTML = nav.join("\n");
    document.getElementById("main").innerHTML = main.join("\n");
    if (location.hash) {
      var target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  fetch(specUrl, { headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    })
    .then(render)
    .catch(function (error) {
      document.getElementById("main").innerHTML = '<p class="error">Could not load ' + esc(specUrl) +
        ": " + esc(error.message) + "</p>";
    });
})();
