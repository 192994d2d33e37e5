//! The two plots of docs/performance.md, drawn as SVG with plotters: RTT percentiles
//! against offered load, and server RSS against open sockets, telcall beside the
//! reference relay.

use std::path::Path;

use plotters::prelude::*;

/// One line: a name and its (x, y) points.
pub struct Line {
    /// Legend text.
    pub name: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
    /// Dashed (a second statistic of the same server).
    pub dashed: bool,
    /// Colour index (0 telcall, 1 reference).
    pub colour: usize,
}

const COLOURS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// Draws `lines` into an SVG file at `path`.
pub fn draw(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
) -> anyhow::Result<()> {
    let max_x = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let max_y = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.001_f64, f64::max);
    let root = SVGBackend::new(path, (820, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_x * 1.05, 0.0..max_y * 1.15)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| crate::report::fmt_num(*v))
        .y_label_formatter(&|v| crate::report::fmt_num(*v))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for line in lines {
        let colour = COLOURS[line.colour % COLOURS.len()];
        let style = colour.stroke_width(2);
        let points = line.points.clone();
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(&line.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], colour)
                });
        } else {
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(&line.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_with_both_series_is_written() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("p.svg");
        draw(
            &path,
            "RSS against open sockets",
            "open sockets",
            "RSS (MiB)",
            &[
                Line {
                    name: "telcall".into(),
                    points: vec![(0.0, 20.0), (5000.0, 160.0)],
                    dashed: false,
                    colour: 0,
                },
                Line {
                    name: "reference relay".into(),
                    points: vec![(0.0, 3.0), (5000.0, 40.0)],
                    dashed: true,
                    colour: 1,
                },
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let svg = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("reference relay") && svg.contains("telcall"));
    }
}
