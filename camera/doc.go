// Package camera turns cameras into frames for the encoders: the Source
// interface, gocv sources (V4L2 devices, RTSP/HTTP streams, files), the motion
// gate, regions and snapshots. See ../shared/DESIGN.md, "Data flow".
package camera
