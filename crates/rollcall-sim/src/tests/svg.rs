//! The plots are well-formed SVG with one bar per bin and one point per threshold.

use super::super::*;

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{svg}"))
}

fn count(doc: &roxmltree::Document<'_>, tag: &str, class: &str) -> usize {
    doc.descendants().filter(|n| n.has_tag_name(tag) && n.attribute("class") == Some(class)).count()
}

fn point(threshold: f64, p99_ms: Option<f64>, per_1000_node_days: f64) -> SweepPoint {
    SweepPoint {
        threshold,
        detection_p50_ms: p99_ms,
        detection_p99_ms: p99_ms,
        false_downs: 0,
        false_downs_per_1000_node_days: per_1000_node_days,
        violations: 0,
    }
}

#[test]
fn the_histogram_has_one_bar_per_bin_and_labelled_axes() {
    let values = [3.4, 3.9, 4.0, 4.05, 4.1, 4.4, 4.5];
    let svg = svg::histogram(&values, 12, "detection <phi 8> & more");
    let doc = parse(&svg);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(count(&doc, "rect", "bar"), 12);
    assert!(count(&doc, "line", "tick") >= 6, "ticks on both axes");
    let text: String = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(text.contains("detection time after a crash (s)") && text.contains("crashes"));
    assert!(text.contains("detection <phi 8> & more"), "the title is escaped, not dropped");
    // The bars' counts add up to the number of values.
    let total: u64 = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("bar"))
        .map(|bar| {
            bar.descendants()
                .find_map(|n| n.text())
                .unwrap()
                .rsplit(": ")
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, values.len() as u64);
}

#[test]
fn the_tradeoff_curve_has_one_point_per_threshold_that_detected_something() {
    let points = [
        point(1.0, Some(1200.0), 5000.0),
        point(4.0, Some(3000.0), 12.0),
        point(8.0, Some(4500.0), 0.0),
        point(16.0, None, 0.0),
    ];
    let svg = svg::tradeoff(&points, "phi", "lan");
    let doc = parse(&svg);
    assert_eq!(count(&doc, "circle", "point"), 3);
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count(), 1);
    let text: String = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(text.contains("false downs per 1,000 node-days") && text.contains("detection p99 (s)"));
}

#[test]
fn empty_plots_are_still_well_formed_and_say_why() {
    let check = |svg: String, tag: &str, class: &str, expected: usize| {
        assert_eq!(count(&parse(&svg), tag, class), expected, "{svg}");
    };
    check(svg::histogram(&[], 10, "none"), "rect", "bar", 0);
    check(svg::tradeoff(&[point(8.0, None, 0.0)], "phi", "none"), "circle", "point", 0);
    check(svg::histogram(&[4.0, 4.0, 4.0], 5, "one value"), "rect", "bar", 5);
}
