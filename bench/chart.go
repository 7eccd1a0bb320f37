package main

import (
	"fmt"
	"image/color"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writeChart draws, for each scenario, the API's throughput against
// concurrency with the limit's beside it, and in a last panel the ratio of
// the two for every scenario, with the targets. It writes the
// chart to path as a PNG.
func writeChart(path string, rows []*Row) error {
	var panels []*plot.Plot
	for _, name := range rowScenarios(rows) {
		panel, err := throughputPanel(name, selectRows(rows, byScenario(name)))
		if err != nil {
			return err
		}
		panels = append(panels, panel)
	}
	ratios, err := ratioPanel(rows)
	if err != nil {
		return err
	}
	panels = append(panels, ratios)

	const cols = 3
	grid := make([][]*plot.Plot, (len(panels)+cols-1)/cols)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
		for j := range cols {
			if k := i*cols + j; k < len(panels) {
				grid[i][j] = panels[k]
			} else {
				grid[i][j] = plot.New() // an empty tile
				grid[i][j].HideAxes()
			}
		}
	}
	img := vgimg.New(vg.Length(cols)*5*vg.Inch, vg.Length(len(grid))*3.6*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(grid), Cols: cols, PadX: vg.Inch / 4, PadY: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align(grid, tiles, dc)
	for i := range grid {
		for j := range grid[i] {
			grid[i][j].Draw(canvases[i][j])
		}
	}

	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(file); err != nil {
		_ = file.Close()
		return fmt.Errorf("writing chart: %w", err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("writing chart: %w", err)
	}
	return nil
}

// throughputPanel plots one scenario: requests per second of the API, of
// the limit and of the peer (where it ran) against concurrency.
func throughputPanel(name string, rows []*Row) (*plot.Plot, error) {
	p := newPanel(name, "requests per second", rows)
	var api, limit, peer plotter.XYs
	for _, r := range rows {
		api = append(api, plotter.XY{X: float64(r.Concurrency), Y: r.APIRPS})
		limit = append(limit, plotter.XY{X: float64(r.Concurrency), Y: r.LimitRPS})
		if r.Peer != nil {
			peer = append(peer, plotter.XY{X: float64(r.Concurrency), Y: r.PeerRPS})
		}
	}
	if err := addLine(p, "API", api, plotutil.Color(0), false); err != nil {
		return nil, err
	}
	if err := addLine(p, "limit (raw SQL, one round trip a transaction)", limit, plotutil.Color(1), true); err != nil {
		return nil, err
	}
	if len(peer) > 0 {
		if err := addLine(p, "peer (DBOS)", peer, plotutil.Color(2), false); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	p.Y.Max *= 1.3 // room for the legend
	return p, nil
}

// ratioPanel plots the API's throughput as a share of the limit's, for
// every scenario, with the target.
func ratioPanel(rows []*Row) (*plot.Plot, error) {
	p := newPanel("API / limit", "ratio", rows)
	for i, name := range rowScenarios(rows) {
		var points plotter.XYs
		for _, r := range selectRows(rows, byScenario(name)) {
			points = append(points, plotter.XY{X: float64(r.Concurrency), Y: r.Ratio})
		}
		line, scatter, err := plotter.NewLinePoints(points)
		if err != nil {
			return nil, fmt.Errorf("plotting ratios of %s: %w", name, err)
		}
		c := plotutil.Color(i)
		line.Color, scatter.Color = c, c
		p.Add(line, scatter)
		p.Legend.Add(name, line, scatter)
	}
	if err := addLevel(p, fmt.Sprintf("target (%.1f)", ratioMin), ratioMin, rows); err != nil {
		return nil, err
	}
	// Room above the lines for the legend.
	p.Y.Min = 0
	p.Y.Max = max(p.Y.Max, 1.1) * 1.6
	p.Legend.Top = true
	return p, nil
}

// newPanel returns a plot with concurrency on a logarithmic x axis, ticked
// at the concurrencies measured.
func newPanel(title, yLabel string, rows []*Row) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "concurrency"
	p.Y.Label.Text = yLabel
	p.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	for _, c := range concurrencies(rows) {
		ticks = append(ticks, plot.Tick{Value: float64(c), Label: strconv.Itoa(c)})
	}
	p.X.Tick.Marker = ticks
	p.X.Min, p.X.Max = float64(ticks[0].Value)/1.5, float64(ticks[len(ticks)-1].Value)*1.5
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.Legend.YOffs = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p
}

// addLine adds a line with points, dashed for the limit.
func addLine(p *plot.Plot, name string, points plotter.XYs, c color.Color, dashed bool) error {
	line, scatter, err := plotter.NewLinePoints(points)
	if err != nil {
		return fmt.Errorf("plotting %s: %w", name, err)
	}
	line.Color, scatter.Color = c, c
	line.Width = vg.Points(1.5)
	if dashed {
		line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	p.Add(line, scatter)
	p.Legend.Add(name, line, scatter)
	return nil
}

// addLevel adds a gray horizontal line at value across the concurrencies.
func addLevel(p *plot.Plot, name string, value float64, rows []*Row) error {
	cs := concurrencies(rows)
	line, err := plotter.NewLine(plotter.XYs{{X: float64(cs[0]) / 1.5, Y: value}, {X: float64(cs[len(cs)-1]) * 1.5, Y: value}})
	if err != nil {
		return fmt.Errorf("plotting %s: %w", name, err)
	}
	line.Color = color.Gray{Y: 0x80}
	line.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(line)
	p.Legend.Add(name, line)
	return nil
}

// rowScenarios returns the rows' scenarios in the order they ran.
func rowScenarios(rows []*Row) []string {
	var names []string
	for _, r := range rows {
		if !slices.Contains(names, r.Scenario) {
			names = append(names, r.Scenario)
		}
	}
	return names
}

// concurrencies returns the rows' concurrencies, sorted.
func concurrencies(rows []*Row) []int {
	var cs []int
	for _, r := range rows {
		if !slices.Contains(cs, r.Concurrency) {
			cs = append(cs, r.Concurrency)
		}
	}
	slices.Sort(cs)
	return cs
}
