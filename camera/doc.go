// Package camera is everything between the lens and the encoder: sources
// that keep only a camera's newest frame (V4L2 devices, RTSP and HTTP
// streams, video files, still images) and come back on their own after an
// outage; a motion gate that decides when a frame is worth encoding;
// regions (the full frame, grid cells, crops around motion) in frame
// coordinates; and JPEG snapshots with a region outlined.
//
// A camera pipeline, per frame:
//
//	f, err := src.Next(ctx)        // newest frame; ErrUnavailable during outages
//	d, err := gate.Check(f.Mat, f.Time)
//	if d.Encode {
//		regions = rb.Build(regions, size, d.Boxes)
//		rects = camera.Rects(rects, regions)
//		err = enc.Encode(f.Mat, rects, vectors) // quant/encoder.Image
//	}
package camera
