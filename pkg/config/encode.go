package config

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Marshal renders a config as YAML in the format Parse reads, keys in the
// order of the types. Scalars are always written (so defaults are visible);
// empty strings, unset addresses and empty lists are left out.
func Marshal(c *Config) ([]byte, error) {
	n, err := encodeValue(reflect.ValueOf(*c))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return b.Bytes(), nil
}

var textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()

func scalar(s, tag string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Tag: tag}
}

// omit reports whether a value carries nothing worth printing.
func omit(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int64:
		return false // numbers and switches are printed even when zero
	}
	return v.IsZero()
}

func encodeValue(v reflect.Value) (*yaml.Node, error) {
	if v.Type().Implements(textMarshalerType) {
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, err
		}
		// No tag: the encoder quotes only what would not read back as
		// the same text (ports stay 443, not "443").
		return scalar(string(b), ""), nil
	}
	switch v.Kind() {
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range structFields(v.Type()).list {
			fv := v.Field(f.index)
			if omit(fv) {
				continue
			}
			n, err := encodeValue(fv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.key, err)
			}
			m.Content = append(m.Content, scalar(f.key, "!!str"), n)
		}
		return m, nil
	case reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := 0; i < v.Len(); i++ {
			n, err := encodeValue(v.Index(i))
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, n)
		}
		return s, nil
	case reflect.String:
		return scalar(v.String(), "!!str"), nil
	case reflect.Int:
		return scalar(strconv.FormatInt(v.Int(), 10), "!!int"), nil
	case reflect.Bool:
		return scalar(strconv.FormatBool(v.Bool()), "!!bool"), nil
	}
	return nil, fmt.Errorf("cannot encode %s", v.Type())
}
