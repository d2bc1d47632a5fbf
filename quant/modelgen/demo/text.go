package demo

import (
	"math"

	"github.com/sightd/sightd/quant/modelgen"
)

// textGraph returns the float32 text tower for vocabulary v: input [1,77]
// int32 token ids, output [1,Dim] unit vectors.
//
//	GATHER                  token embeddings [1,77,Dim]: a known word's row is its
//	                        concept direction, every other row (start, end,
//	                        padding 0, pieces of other words) is zero
//	MEAN over the sequence  [1,Dim]
//	FULLY_CONNECTED         ContextLength·identity (the sum of the known words)
//	                        plus textBias on the bias dimension
//	L2_NORMALIZATION
func textGraph(v *vocabulary) *modelgen.Graph {
	rows := v.tok.VocabSize()
	table := make([]float32, rows*Dim)
	index := map[string]int{}
	for i, n := range conceptNames() {
		index[n] = i
	}
	for _, w := range Words() {
		row := table[int(v.ids[w.Word])*Dim:][:Dim]
		var norm float64
		for _, x := range w.Concepts {
			norm += x * x
		}
		for c, x := range w.Concepts {
			row[index[c]] = float32(x / math.Sqrt(norm))
		}
	}

	g := modelgen.NewGraph("sightd-demo text tower: one embedding row per colour word (not a trained model)")
	in := g.NewTensor("tokens", modelgen.Int32, []int{1, ContextLength}, nil)
	emb := g.NewTensor("token_embeddings", modelgen.Float32, []int{1, ContextLength, Dim}, nil)
	g.Gather(g.NewConst("token_embedding", []int{rows, Dim}, table, nil), in, emb)

	mean := g.NewTensor("mean", modelgen.Float32, []int{1, Dim}, nil)
	g.Mean(emb, g.NewConst("mean/axes", []int{1}, []int32{1}, nil), mean)

	embeddingHead(g, in, mean, Dim, ContextLength, textBias)
	return g
}
