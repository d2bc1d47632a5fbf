// Package demo generates sightd's demo model bundle: a real, small bundle
// (int8 image tower, float32 text tower, CLIP-format tokenizer, manifest,
// probes) whose towers are designed by hand rather than trained, so that a
// few plain colour and brightness words land near images that show them.
// No CLIP weights are needed or downloaded; Build writes the same bytes on
// every machine.
//
// # Embedding space
//
// Dim = 16 dimensions: one per concept (red, orange, yellow, green, blue,
// purple, brown, white, dark, grey; see Concepts), then a bias dimension
// that every vector has a share of, so that none is ever zero, then five
// spare dimensions that stay zero (16 suits int8 SIMD kernels).
//
// # Image tower (int8, input [1,64,64,3] RGB, pixels in [0,1])
//
//	CONV_2D 1x1, 3 -> 29, RELU     brightness and chroma features of each pixel
//	CONV_2D 1x1, 29 -> 10, RELU6   how fully each pixel shows each concept (6 = fully)
//	MEAN over the image            the share of the image showing each concept
//	FULLY_CONNECTED 10 -> 16       concept i -> dimension i, plus 0.1 on the bias dimension
//	L2_NORMALIZATION
//
// Colours are cones in the chroma plane (RGB minus its grey component:
// red 0°, yellow 60°, green 120°, cyan 180°, blue 240°, magenta 300°): a
// pixel counts for a hue when its chroma angle lies inside the hue's cone
// and its chroma is large enough. One linear layer cannot pick out a band of
// hues (orange between red and yellow), so the first layer computes each
// hue's chroma coordinates along and across its centre angle, and the
// second combines them: x - k₁·relu(y) - k₂·relu(-y) falls linearly to zero
// at the cone's edges. Brightness concepts use the mean of R, G, B and the
// chroma max-min (the sum of the cyclic differences relu(R-G) + relu(G-B) +
// relu(B-R)). Orange and brown share hues and differ in brightness (the red
// channel, which is the largest for these hues). The float tower is
// quantized by modelgen.Quantize on synthetic images (a 5-level RGB grid of
// flat colours and two gradients); the bundle's input has scale 1/255 and
// zero point -128, so pixel value p is p-128.
//
// # Text tower (float32, input [1,77] token ids)
//
//	GATHER            a known word's row is its concept direction; all other
//	                  rows (start, end, padding 0, pieces of other words) are 0
//	MEAN over the 77 positions
//	FULLY_CONNECTED   77·identity (the sum of the known words) plus 0.1 on the bias dimension
//	L2_NORMALIZATION
//
// So "a photo of a red car" embeds exactly as "red", "blue and green"
// halfway between blue and green, and a rule without any known word as the
// bias dimension alone. "colourful" and "colorful" name all six hues
// equally.
//
// # Tokenizer
//
// The merge list (CLIP's format, "#version: 0.2" then "a b" merges) is
// generated: for each word in turn, BPE with the merges so far runs on
// "word</w>" and, while the word is more than one symbol, a merge of its two
// leftmost symbols is appended. Build checks that every word is exactly one
// token. Only those exact words count (case-insensitively): plurals and
// derived forms ("oranges", "reddish", "darkness") are other words and add
// nothing, while a word that ends in a known word becomes pieces ending in
// that word's token ("bored", "Fred" and "sacred" contain "red"), as in any
// BPE with word-end markers only.
//
// # What it recognises
//
// The share of an image that shows a colour or a brightness: "something
// orange", "a blue sky", "a dark scene", "a white background", "grey". A
// word's cosine with an image is, up to the small bias terms, that concept's
// share of the image's colour profile. It knows nothing of objects, shapes
// or places: "an orange car" and "an orange" are the same rule, a red
// apple and a red stop sign look alike, and "a dark scene" cannot tell night
// from a black wall. Brown is dark orange to it (the shaded side of an apple
// counts), beige and pale yellow fall below the colour thresholds (a beige wall is not yellow), and purple, absent
// from the real test photos, is checked on synthetic colours only.
package demo
