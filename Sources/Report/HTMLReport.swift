/// A report as one self-contained HTML page.
public enum HTMLReport {
  public static func render(_ report: RunReport) -> String { "<!doctype html>\n" }
}
