/// A report as one self-contained HTML page: inline CSS and SVG, no script, no font or image
/// from anywhere else, so that it opens from a CI artifact or an e-mail as it is. It shows the
/// gates first, then the size and MACs of the model after every step (a waterfall: each step's
/// bar spans what it removed), quality after every step, one bar chart per pass of per-layer
/// numbers (sparsity, channels removed, rank, output error, SQNR, sensitivity), and every
/// per-layer decision. The bytes depend only on the report (no clock, no locale).
public enum HTMLReport {
  public static func render(_ report: RunReport) -> String {
    var page = Page()
    page.head(title: "compressor \(report.command) — \(report.input.file)")
    page.header(report)
    page.gates(report)
    page.cards(report)
    page.waterfalls(report)
    page.qualityChart(report)
    page.layerCharts(report)
    page.decisions(report)
    page.inputs(report)
    page.timings(report)
    page.raw += "</main>\n</body>\n</html>\n"
    return page.raw
  }
}

/// The page being written, and the pieces it is written with.
struct Page {
  var raw = ""

  mutating func head(title: String) {
    raw += """
      <!DOCTYPE html>
      <html lang="en">
      <head>
      <meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <meta name="generator" content="compressor \(ToolInfo.currentVersion)">
      <title>\(esc(title))</title>
      <style>
      :root { --fg: #1d2330; --muted: #5b6475; --line: #d8dce4; --bg: #ffffff; --panel: #f5f7fa; --good: #1f8a4c; --bad: #c62f2f; --bar: #3f6fd8; --bar2: #8aa7e8; }
      * { box-sizing: border-box; }
      body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
      main { max-width: 1100px; margin: 0 auto; padding: 24px; }
      h1 { font-size: 22px; margin: 0 0 4px; }
      h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
      h3 { font-size: 14px; margin: 16px 0 6px; }
      .muted { color: var(--muted); }
      .banner { margin: 14px 0; padding: 10px 14px; border-radius: 6px; font-weight: 600; }
      .banner.pass { background: #e6f4ec; color: var(--good); border: 1px solid #b7dfc6; }
      .banner.fail { background: #fbe9e9; color: var(--bad); border: 1px solid #efbcbc; }
      .banner.none { background: var(--panel); color: var(--muted); border: 1px solid var(--line); }
      .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; }
      .card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
      .card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
      .card .v { font-size: 20px; font-weight: 600; }
      .card .d { color: var(--muted); font-size: 12px; }
      table { border-collapse: collapse; width: 100%; font-size: 13px; }
      th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
      th { background: var(--panel); font-weight: 600; }
      td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
      .pass { color: var(--good); font-weight: 600; }
      .fail { color: var(--bad); font-weight: 600; }
      .action-skipped { color: var(--muted); }
      details { margin: 8px 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
      summary { cursor: pointer; font-weight: 600; }
      svg.chart { display: block; max-width: 100%; height: auto; margin: 6px 0 14px; }
      svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: var(--fg); }
      svg .axis { stroke: var(--line); }
      svg .bar { fill: var(--bar); }
      svg .bar.up { fill: var(--bad); }
      svg .bar.base { fill: var(--bar2); }
      svg .series-0 { stroke: var(--bar); fill: var(--bar); }
      svg .series-1 { stroke: var(--good); fill: var(--good); }
      svg .series-2 { stroke: #b5651d; fill: #b5651d; }
      svg polyline.line { fill: none; stroke-width: 2; }
      code { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 12px; }
      </style>
      </head>
      <body>
      <main>

      """
  }

  mutating func header(_ r: RunReport) {
    let what = r.command == "pipeline" ? "pipeline" : "compressor \(r.command)"
    let recipe = r.inputs.first { $0.role == "recipe" }?.file
    raw += "<h1>\(esc(what))\(recipe.map { " — " + esc($0) } ?? ""): \(esc(r.input.file)) → \(esc(r.output.file.isEmpty ? "(no model written)" : r.output.file))</h1>\n"
    raw += "<p class=\"muted\">\(esc(r.tool.name)) \(esc(r.tool.version)) · report schema \(r.schemaVersion)"
    if let steps = r.steps { raw += " · \(steps.count) step\(steps.count == 1 ? "" : "s") run" }
    raw += "</p>\n"
  }

  /// Every gate of the run (the recipe's and each step's), failures first in the banner.
  mutating func gates(_ r: RunReport) {
    var all = (r.gates ?? []).map { (where: r.steps == nil ? r.command : "recipe", gate: $0) }
    for s in r.steps ?? [] { all += (s.gates ?? []).map { (where: "step \(s.at ?? "") \(s.command)", gate: $0) } }
    let failed = all.filter { !$0.gate.passed }
    if all.isEmpty {
      raw += "<div class=\"banner none\" id=\"verdict\">No quality gates were set.</div>\n"
    } else if failed.isEmpty {
      raw += "<div class=\"banner pass\" id=\"verdict\">All \(all.count) gate\(all.count == 1 ? "" : "s") passed.</div>\n"
    } else {
      raw += "<div class=\"banner fail\" id=\"verdict\">\(failed.count) of \(all.count) gates failed: "
        + failed.map { esc($0.gate.summary ?? $0.gate.gate) }.joined(separator: "; ") + "</div>\n"
    }
    guard !all.isEmpty else { return }
    raw += "<h2>Gates</h2>\n<table class=\"gates\">\n<tr><th>where</th><th>gate</th><th class=\"num\">limit</th><th class=\"num\">value</th><th class=\"num\">margin</th><th>against</th><th>result</th></tr>\n"
    for (place, g) in all {
      let limit = "\(g.comparison) \(num(g.limit))\(g.unit == "ratio" || g.unit == "fraction" ? "" : " " + g.unit)"
      raw += "<tr><td>\(esc(place))</td><td>\(esc(g.gate))</td><td class=\"num\">\(esc(limit))</td>"
        + "<td class=\"num\">\(g.value.map(num) ?? "—")</td><td class=\"num\">\(g.margin.map(num) ?? "—")</td>"
        + "<td>\(esc(g.against))</td><td class=\"\(g.passed ? "pass" : "fail")\">\(g.passed ? "passed" : "FAILED")</td></tr>\n"
    }
    raw += "</table>\n"
  }

  mutating func cards(_ r: RunReport) {
    guard let first = r.metrics.first else { return }
    let last = r.metrics.last ?? first
    func card(_ key: String, _ value: String, _ detail: String) {
      raw += "<div class=\"card\"><div class=\"k\">\(esc(key))</div><div class=\"v\">\(esc(value))</div><div class=\"d\">\(esc(detail))</div></div>\n"
    }
    raw += "<h2>Result</h2>\n<div class=\"cards\">\n"
    card("size", htmlBytes(last.bytes), "\(ratio(last.bytes, first.bytes)) of \(htmlBytes(first.bytes))")
    if let a = first.deflatedBytes, let b = last.deflatedBytes { card("deflated", htmlBytes(b), "\(ratio(b, a)) of \(htmlBytes(a))") }
    card("parameters", htmlCount(last.parameters), "\(ratio(last.parameters, first.parameters)) of \(htmlCount(first.parameters))")
    if let a = first.macs, let b = last.macs { card("MACs per sample", htmlCount(b), "\(ratio(b, a)) of \(htmlCount(a))") }
    if let acc = last.quality?["accuracy"] {
      card("accuracy", percent(acc), first.quality?["accuracy"].map { "input \(percent($0))" } ?? "")
    }
    if let agreement = last.quality?["agreement"] {
      card("agreement", percent(agreement), last.quality?["meanCosine"].map { "mean cosine \(num($0))" } ?? "with the input")
    }
    raw += "</div>\n"
  }

  /// Size and MACs after every step: each step's bar spans from the level before it to the level after.
  mutating func waterfalls(_ r: RunReport) {
    guard r.metrics.count >= 2 else { return }
    raw += "<h2>Size and cost after every step</h2>\n"
    waterfall(title: "bytes", id: "waterfall-bytes", r.metrics.map { ($0.at == "0" ? "input" : "\($0.at) \($0.step)", Double($0.bytes)) },
              format: { htmlBytes(Int($0)) })
    if r.metrics.allSatisfy({ $0.macs != nil }) {
      waterfall(title: "MACs per sample", id: "waterfall-macs",
                r.metrics.map { ($0.at == "0" ? "input" : "\($0.at) \($0.step)", Double($0.macs ?? 0)) }, format: { htmlCount(Int($0)) })
    }
  }

  mutating func waterfall(title: String, id: String, _ rows: [(String, Double)], format: (Double) -> String) {
    let labelWidth = 170.0, chartWidth = 600.0, rowHeight = 24.0
    let top = 22.0
    let height = top + rowHeight * Double(rows.count) + 8
    let maximum = max(rows.map(\.1).max() ?? 1, 1)
    func x(_ v: Double) -> Double { labelWidth + v / maximum * chartWidth }
    raw += "<svg class=\"chart waterfall\" id=\"\(id)\" viewBox=\"0 0 \(f(labelWidth + chartWidth + 110)) \(f(height))\" role=\"img\" aria-label=\"\(esc(title)) after every step\">\n"
    raw += "<text x=\"0\" y=\"14\" font-weight=\"600\">\(esc(title))</text>\n"
    raw += "<line class=\"axis\" x1=\"\(f(labelWidth))\" y1=\"\(f(top - 4))\" x2=\"\(f(labelWidth))\" y2=\"\(f(height - 4))\"/>\n"
    var previous = rows.first?.1 ?? 0
    for (i, (label, value)) in rows.enumerated() {
      let y = top + rowHeight * Double(i)
      let (lo, hi) = i == 0 ? (0, value) : (min(previous, value), max(previous, value))
      let cls = i == 0 ? "bar base" : value > previous ? "bar up" : "bar"
      raw += "<text x=\"0\" y=\"\(f(y + 15))\">\(esc(clip(label, 26)))</text>\n"
      raw += "<rect class=\"\(cls)\" x=\"\(f(x(lo)))\" y=\"\(f(y + 3))\" width=\"\(f(max(x(hi) - x(lo), 1)))\" height=\"\(f(rowHeight - 8))\"><title>\(esc(label)): \(esc(format(value)))</title></rect>\n"
      if i > 0 {
        // The level the step reached, as a thin mark, and its value.
        raw += "<line class=\"axis\" x1=\"\(f(x(value)))\" y1=\"\(f(y + 1))\" x2=\"\(f(x(value)))\" y2=\"\(f(y + rowHeight - 3))\"/>\n"
      }
      raw += "<text x=\"\(f(x(hi) + 6))\" y=\"\(f(y + 15))\">\(esc(format(value)))</text>\n"
      previous = value
    }
    raw += "</svg>\n"
  }

  /// Accuracy, agreement and mean cosine after every step, on one 0…1 scale.
  mutating func qualityChart(_ r: RunReport) {
    let keys = ["accuracy", "agreement", "meanCosine"].filter { k in r.metrics.contains { $0.quality?[k] != nil } }
    guard !keys.isEmpty, r.metrics.count >= 2 else { return }
    let values = r.metrics.flatMap { row in keys.compactMap { row.quality?[$0] } }
    let lo = max(0, ((values.min() ?? 0) * 20).rounded(.down) / 20 - 0.05), hi = 1.0
    let left = 50.0, width = 640.0, top = 24.0, plot = 180.0
    let n = r.metrics.count
    func x(_ i: Int) -> Double { left + (n == 1 ? width / 2 : Double(i) / Double(n - 1) * width) }
    func y(_ v: Double) -> Double { top + (hi - v) / max(hi - lo, 1e-9) * plot }
    raw += "<h2>Quality after every step</h2>\n"
    raw += "<p class=\"muted\">Against the input model on the evaluation data"
      + (r.steps == nil ? " (the input's own accuracy first)" : "") + ".</p>\n"
    raw += "<svg class=\"chart quality\" id=\"quality\" viewBox=\"0 0 \(f(left + width + 160)) \(f(top + plot + 60))\" role=\"img\" aria-label=\"quality after every step\">\n"
    for t in stride(from: 0, through: 4, by: 1) {
      let v = lo + (hi - lo) * Double(t) / 4
      raw += "<line class=\"axis\" x1=\"\(f(left))\" y1=\"\(f(y(v)))\" x2=\"\(f(left + width))\" y2=\"\(f(y(v)))\"/>"
        + "<text x=\"4\" y=\"\(f(y(v) + 4))\">\(esc(num(v)))</text>\n"
    }
    for (i, row) in r.metrics.enumerated() {
      raw += "<text x=\"\(f(x(i) - 20))\" y=\"\(f(top + plot + 18 + Double(i % 2) * 14))\">\(esc(clip(row.at == "0" ? "input" : "\(row.at) \(row.step)", 18)))</text>\n"
    }
    for (k, key) in keys.enumerated() {
      let points = r.metrics.enumerated().compactMap { i, row in row.quality?[key].map { (i, $0) } }
      if points.count > 1 {
        raw += "<polyline class=\"line series-\(k)\" points=\"" + points.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ") + "\"/>\n"
      }
      for (i, v) in points {
        raw += "<circle class=\"point series-\(k)\" cx=\"\(f(x(i)))\" cy=\"\(f(y(v)))\" r=\"4\"><title>\(esc(key)) \(esc(num(v)))</title></circle>\n"
      }
      raw += "<circle class=\"series-\(k)\" cx=\"\(f(left + width + 20))\" cy=\"\(f(top + 10 + Double(k) * 18))\" r=\"5\"/>"
        + "<text x=\"\(f(left + width + 30))\" y=\"\(f(top + 14 + Double(k) * 18))\">\(esc(key))</text>\n"
    }
    raw += "</svg>\n"
  }

  /// One bar chart per pass that measured something per layer.
  mutating func layerCharts(_ r: RunReport) {
    var charts = [(title: String, id: String, rows: [(String, Double)], unit: String)]()
    for (s, section) in stepSections(r).enumerated() {
      for (p, pass) in section.passes.enumerated() {
        guard let (name, unit, rows) = layerSeries(pass), !rows.isEmpty else { continue }
        charts.append(("\(section.title): \(pass.pass) — \(name)", "layers-\(s)-\(p)", rows, unit))
      }
    }
    guard !charts.isEmpty else { return }
    raw += "<h2>Per layer</h2>\n"
    for c in charts {
      raw += "<h3>\(esc(c.title))</h3>\n"
      barChart(id: c.id, rows: c.rows, unit: c.unit)
    }
  }

  /// The number a pass reports per layer that says most about it.
  func layerSeries(_ pass: PassSection) -> (String, String, [(String, Double)])? {
    let measured = pass.changes.filter { $0.values != nil && $0.action != "skipped" }
    func series(_ key: String) -> [(String, Double)] { measured.compactMap { c in c.values?[key].map { (c.target, $0) } } }
    if pass.pass.hasPrefix("prune-search") || measured.contains(where: { $0.action == "analyzed" }) {
      return ("sensitivity (quality lost)", "", measured.filter { $0.action == "analyzed" }.compactMap { c in c.values?["loss"].map { ("\(c.target) @\(num(c.values?["ratio"] ?? 0))", $0) } })
    }
    if !series("sparsity").isEmpty { return ("sparsity", "", series("sparsity")) }
    let channels = measured.compactMap { c -> (String, Double)? in
      guard let a = c.values?["channelsBefore"], let b = c.values?["channelsAfter"], a > 0 else { return nil }
      return (c.target, 1 - b / a)
    }
    if !channels.isEmpty { return ("channels removed", "", channels) }
    let heads = measured.compactMap { c -> (String, Double)? in
      guard let a = c.values?["headsBefore"], let b = c.values?["headsAfter"], a > 0 else { return nil }
      return (c.target, 1 - b / a)
    }
    if !heads.isEmpty { return ("heads removed", "", heads) }
    if !series("rank").isEmpty {
      let errors = series("outputError")
      return errors.isEmpty ? ("rank", "", series("rank")) : ("output error (relative)", "", errors)
    }
    if !series("sqnrDb").isEmpty { return ("weight SQNR", "dB", series("sqnrDb")) }
    let trained = measured.filter { $0.action == "trained" }.compactMap { c in c.values?["loss"].map { (c.target, $0) } }
    if !trained.isEmpty { return ("training loss", "", trained) }
    if !series("loss").isEmpty { return ("loss", "", series("loss")) }
    return nil
  }

  mutating func barChart(id: String, rows allRows: [(String, Double)], unit: String) {
    let limit = 120
    let rows = Array(allRows.prefix(limit))
    let labelWidth = 230.0, chartWidth = 520.0, rowHeight = 18.0
    let maximum = max(rows.map { abs($0.1) }.max() ?? 1, 1e-12)
    let height = rowHeight * Double(rows.count) + 6
    raw += "<svg class=\"chart layers\" id=\"\(esc(id))\" viewBox=\"0 0 \(f(labelWidth + chartWidth + 90)) \(f(height))\" role=\"img\">\n"
    for (i, (label, value)) in rows.enumerated() {
      let y = rowHeight * Double(i)
      raw += "<text x=\"0\" y=\"\(f(y + 13))\">\(esc(clip(label, 36)))</text>"
        + "<rect class=\"bar\" x=\"\(f(labelWidth))\" y=\"\(f(y + 3))\" width=\"\(f(max(abs(value) / maximum * chartWidth, 1)))\" height=\"\(f(rowHeight - 6))\"><title>\(esc(label)): \(esc(num(value)))\(unit.isEmpty ? "" : " " + esc(unit))</title></rect>"
        + "<text x=\"\(f(labelWidth + abs(value) / maximum * chartWidth + 6))\" y=\"\(f(y + 13))\">\(esc(num(value)))\(unit.isEmpty ? "" : " " + esc(unit))</text>\n"
    }
    raw += "</svg>\n"
    if allRows.count > limit { raw += "<p class=\"muted\">… and \(allRows.count - limit) more in the table below.</p>\n" }
  }

  struct SectionView { var title: String; var passes: [PassSection]; var quality: QualitySection?; var options: [String: OptionValue]?; var warnings: [String] }

  func stepSections(_ r: RunReport) -> [SectionView] {
    if let steps = r.steps {
      return steps.map { SectionView(title: "step \($0.at ?? "") \($0.command)", passes: $0.passes, quality: $0.quality, options: $0.options, warnings: $0.warnings) }
    }
    return [SectionView(title: r.command, passes: r.passes ?? [], quality: r.quality, options: r.options, warnings: r.warnings)]
  }

  /// Every change and every skip, with its reason, per step and pass.
  mutating func decisions(_ r: RunReport) {
    raw += "<h2>Decisions, layer by layer</h2>\n"
    for section in stepSections(r) {
      let changed = section.passes.reduce(0) { $0 + $1.changes.filter { $0.action != "skipped" }.count }
      let skipped = section.passes.reduce(0) { $0 + $1.changes.filter { $0.action == "skipped" }.count }
      raw += "<details class=\"step\" open><summary>\(esc(section.title)) — \(changed) changed, \(skipped) left alone</summary>\n"
      if let options = section.options, !options.isEmpty {
        raw += "<p class=\"muted\"><code>" + options.keys.sorted().map { "\(esc($0)): \(esc(options[$0]?.description ?? ""))" }.joined(separator: ", ") + "</code></p>\n"
      }
      if let q = section.quality {
        raw += "<p>Quality on \(esc(q.data)) (\(q.samples) samples): " + q.compressed.keys.sorted().map { "\(esc($0)) \(esc(num(q.compressed[$0] ?? 0)))" }.joined(separator: ", ") + "</p>\n"
      }
      for w in section.warnings { raw += "<p class=\"fail\">warning: \(esc(w))</p>\n" }
      raw += "<table class=\"decisions\">\n<tr><th>pass</th><th>target</th><th>action</th><th>detail</th></tr>\n"
      for pass in section.passes {
        for c in pass.changes {
          raw += "<tr class=\"action-\(esc(c.action.replacingOccurrences(of: " ", with: "-")))\"><td>\(esc(pass.pass))</td><td><code>\(esc(c.target))</code></td><td>\(esc(c.action))</td><td>\(esc(c.detail))</td></tr>\n"
        }
      }
      raw += "</table>\n</details>\n"
    }
  }

  mutating func inputs(_ r: RunReport) {
    raw += "<h2>Inputs</h2>\n<table class=\"inputs\">\n<tr><th>role</th><th>file</th><th class=\"num\">bytes</th><th>SHA-256</th></tr>\n"
    for i in r.inputs {
      raw += "<tr><td>\(esc(i.role))</td><td>\(esc(i.file))\(i.files.map { " (\($0) files)" } ?? "")</td><td class=\"num\">\(i.bytes)</td><td><code>\(esc(i.sha256))</code></td></tr>\n"
    }
    raw += "</table>\n"
  }

  mutating func timings(_ r: RunReport) {
    guard let t = r.timings else { return }
    raw += "<h2>Timings</h2>\n<table class=\"timings\">\n<tr><th>step</th><th class=\"num\">ms</th><th class=\"num\">latency p50 ms</th><th class=\"num\">input p50 ms</th></tr>\n"
    for s in t.steps {
      let l = t.latency?.first { $0.at == s.at }
      raw += "<tr><td>\(esc(s.at)) \(esc(s.step))</td><td class=\"num\">\(num(s.ms))</td><td class=\"num\">\(l.map { num($0.p50Ms) } ?? "—")</td><td class=\"num\">\(l.map { num($0.inputP50Ms) } ?? "—")</td></tr>\n"
    }
    raw += "<tr><th>total</th><th class=\"num\">\(num(t.totalMs))</th><th></th><th></th></tr>\n</table>\n"
  }
}

// MARK: - Formatting (fixed, locale-free)

func esc(_ s: String) -> String {
  var out = ""
  out.reserveCapacity(s.utf8.count)
  for c in s.unicodeScalars {
    switch c {
    case "&": out += "&amp;"
    case "<": out += "&lt;"
    case ">": out += "&gt;"
    case "\"": out += "&quot;"
    case "'": out += "&#39;"
    default:
      if c.value < 0x20 && c != "\n" && c != "\t" { out += "&#\(c.value);" } else { out.unicodeScalars.append(c) }
    }
  }
  return out
}

/// Coordinates with one decimal.
func f(_ v: Double) -> String {
  guard v.isFinite else { return "0" }
  let tenths = (v * 10).rounded()
  let whole = Int(tenths / 10), frac = Int(abs(tenths).truncatingRemainder(dividingBy: 10))
  return frac == 0 ? "\(tenths < 0 && whole == 0 ? "-" : "")\(whole)" : "\(tenths < 0 && whole == 0 ? "-" : "")\(whole).\(frac)"
}

/// Up to four significant digits, no exponent for ordinary magnitudes.
func num(_ v: Double) -> String {
  guard v.isFinite else { return v.isNaN ? "NaN" : (v > 0 ? "∞" : "−∞") }
  if v == v.rounded() && abs(v) < 1e12 { return String(Int(v)) }
  let magnitude = abs(v)
  let decimals = magnitude >= 100 ? 1 : magnitude >= 10 ? 2 : magnitude >= 1 ? 3 : magnitude >= 0.01 ? 4 : 6
  var scaled = (v * pow10(decimals)).rounded()
  if scaled == 0 { return "0" }
  let negative = scaled < 0
  scaled = abs(scaled)
  var digits = String(Int(scaled))
  while digits.count <= decimals { digits = "0" + digits }
  var text = String(digits.dropLast(decimals)) + "." + String(digits.suffix(decimals))
  while text.hasSuffix("0") { text.removeLast() }
  if text.hasSuffix(".") { text.removeLast() }
  return (negative ? "-" : "") + text
}

func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { r, _ in r * 10 } }

func htmlBytes(_ n: Int) -> String {
  if n < 10_000 { return "\(n) B" }
  if n < 10_000_000 { return "\(num(Double(n) / 1024)) KiB" }
  return "\(num(Double(n) / 1_048_576)) MiB"
}

func htmlCount(_ n: Int) -> String {
  if n < 10_000 { return "\(n)" }
  if n < 10_000_000 { return "\(num(Double(n) / 1000))k" }
  if n < 10_000_000_000 { return "\(num(Double(n) / 1_000_000))M" }
  return "\(num(Double(n) / 1_000_000_000))G"
}

func ratio(_ a: Int, _ b: Int) -> String { b > 0 ? "\(num(Double(a) / Double(b)))×" : "—" }

func percent(_ v: Double) -> String { "\(num(v * 100))%" }

func clip(_ s: String, _ n: Int) -> String { s.count <= n ? s : String(s.prefix(n - 1)) + "…" }
