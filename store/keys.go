package store

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Table prefixes; see the package comment.
const (
	pRule      = 'r'
	pVector    = 'v'
	pVectorSet = 'V'
	pDetection = 'd'
	pOutbox    = 'o'
	pMeta      = 'm'
	pInternal  = 'i'
	pSequence  = 's'

	pEvent         = 'e'
	pEventSnapshot = 'j'
)

// Limits on what callers store.
const (
	MaxIDLen       = 64
	MaxRuleBytes   = 64 << 10
	MaxMetaKeyLen  = 128
	MaxMetaBytes   = 4 << 10
	MaxDetectBytes = 64 << 10
	MaxVectorDim   = 4096
	MaxTopicLen    = 1024 // MQTT allows 65535; sightd's topics are short
)

// validID accepts slugs: lowercase letters, digits, '-' and '_', starting with
// a letter or digit. Ids appear in MQTT topics and Home Assistant entity ids.
func validID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", ErrInvalid)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: id %.20q... is longer than %d bytes", ErrInvalid, id, MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if isLowerAlnum(c) || (i > 0 && (c == '-' || c == '_')) {
			continue
		}
		return fmt.Errorf("%w: id %q: byte %d (%q) is not a lowercase letter, digit, '-' or '_'", ErrInvalid, id, i, c)
	}
	return nil
}

// validVectorName accepts a slug that may also hold '/' and '.' inside
// ("prompt", "negative/0", "ref/porch.jpg").
func validVectorName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty vector name", ErrInvalid)
	}
	if len(name) > MaxIDLen {
		return fmt.Errorf("%w: vector name %.20q... is longer than %d bytes", ErrInvalid, name, MaxIDLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isLowerAlnum(c) || (i > 0 && (c == '-' || c == '_' || c == '/' || c == '.')) {
			continue
		}
		return fmt.Errorf("%w: vector name %q: byte %d (%q) is not allowed", ErrInvalid, name, i, c)
	}
	return nil
}

func validMetaKey(key string) error {
	if key == "" || len(key) > MaxMetaKeyLen || !utf8.ValidString(key) {
		return fmt.Errorf("%w: meta key %q must be 1 to %d bytes of UTF-8", ErrInvalid, key, MaxMetaKeyLen)
	}
	return nil
}

func validVersion(v int64) error {
	if v <= 0 {
		return fmt.Errorf("%w: model version %d must be positive", ErrInvalid, v)
	}
	return nil
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func ruleKey(id string) []byte { return append([]byte{pRule}, id...) }

func versionPrefix(version int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pVector}, uint64(version))
}

// vectorRulePrefix ends in the 0x00 separator, which no id contains, so
// rule "a" does not match rule "ab".
func vectorRulePrefix(version int64, rule string) []byte {
	return append(append(versionPrefix(version), rule...), 0)
}

func vectorKey(version int64, rule, name string) []byte {
	return append(vectorRulePrefix(version, rule), name...)
}

// parseVectorKey splits a key made by vectorKey.
func parseVectorKey(k []byte) (version int64, rule, name string, ok bool) {
	if len(k) < 1+8+2 || k[0] != pVector {
		return 0, "", "", false
	}
	version = int64(binary.BigEndian.Uint64(k[1:9]))
	rest := k[9:]
	for i, c := range rest {
		if c == 0 {
			return version, string(rest[:i]), string(rest[i+1:]), true
		}
	}
	return 0, "", "", false
}

func vectorSetKey(version int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pVectorSet}, uint64(version))
}

func outboxKey(seq uint64) []byte { return binary.BigEndian.AppendUint64([]byte{pOutbox}, seq) }

func detectionKey(unixNano int64, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{pDetection}, uint64(unixNano))
	return binary.BigEndian.AppendUint64(k, seq)
}

func metaKey(key string) []byte     { return append([]byte{pMeta}, key...) }
func internalKey(key string) []byte { return append([]byte{pInternal}, key...) }
func seqKey(name string) []byte     { return append([]byte{pSequence}, name...) }
