// Package ota updates a device's model over the air: it signs and verifies
// model bundles, downloads them, and stages, smoke-tests, activates and rolls
// back installed versions.
//
// A bundle (package quant/bundle) is signed with Ed25519 over the exact
// bytes of its manifest.json; the signature, manifest.sig, also names the
// signing key, the bundle's name and version, and an expiry time, and stands
// right after manifest.json in the tar. Because the manifest holds every
// file's size and SHA-256, a downloader can check the head of a partial
// download (ReadHead, Policy.CheckHead) and cap the download from it
// (MaxTarSize) before the body arrives; VerifyTar then checks the whole tar
// without writing anything. A device trusts a Keyring of public keys (two
// while keys rotate) and refuses any version not above the highest it has
// accepted (Policy.Floor), so that an old, signed bundle cannot be replayed.
//
// Keys, signatures and bundles are made by Pack, GenerateKey, Sign and
// SignTar, which `sightd bundle` wraps.
package ota
