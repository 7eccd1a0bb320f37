package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteChartDrawsEveryScenario(t *testing.T) {
	t.Parallel()
	var rows []*Row
	for _, c := range []int{1, 8, 32} {
		rows = append(rows,
			&Row{Scenario: scenarioNewKeys, Concurrency: c, APIRPS: 100 * float64(c), LimitRPS: 120 * float64(c), Ratio: 0.83,
				Peer: &Figures{}, PeerRPS: 50 * float64(c)},
			&Row{Scenario: scenarioReplays, Concurrency: c, APIRPS: 1000 * float64(c), LimitRPS: 3000 * float64(c), Ratio: 0.33})
	}
	rows = append(rows, &Row{Scenario: scenarioCancels, Concurrency: 8, APIRPS: 300, LimitRPS: 320, Ratio: 0.94})
	path := filepath.Join(t.TempDir(), "results.png")

	require.NoError(t, writeChart(path, rows))

	file, err := os.Open(path)
	require.NoError(t, err)
	defer file.Close()
	img, err := png.Decode(file)
	require.NoError(t, err)
	require.Equal(t, 3*5*96, img.Bounds().Dx()) // three panels a row, 5 inches each at vgimg's 96 dpi
}
