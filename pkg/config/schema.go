package config

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
)

// SchemaID is the $id of the generated JSON Schema.
const SchemaID = "https://passerelle.education.fr/schema/config-v1.json"

// Schema returns the JSON Schema (draft 2020-12) of the configuration,
// generated from the Go types so it cannot drift from what Parse accepts.
// Editors use it for completion and checking; configs/schema/ holds the
// committed copy and a test fails when that copy is stale.
func Schema() ([]byte, error) {
	s := schemaOf(reflect.TypeFor[Config]())
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = SchemaID
	s["title"] = "Passerelle box configuration"
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // descriptions say <uai>, not \u003cuai\u003e
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type obj = map[string]any

var enumType = reflect.TypeFor[enum]()

func schemaOf(t reflect.Type) obj {
	if t.Implements(enumType) {
		return obj{"type": "string", "enum": reflect.Zero(t).Interface().(enum).enumValues()}
	}
	switch t {
	case addrType:
		return obj{"type": "string", "format": "ipv4"}
	case prefixType:
		return obj{"type": "string", "pattern": `^[0-9.]+/[0-9]{1,2}$`}
	case addrPortType:
		return obj{"type": "string", "pattern": `^[0-9a-fA-F.:\[\]]+$`}
	case reflect.TypeFor[Duration]():
		return obj{"type": "string", "pattern": `^([0-9.]+(ns|us|µs|ms|s|m|h))+$`}
	case reflect.TypeFor[MAC]():
		return obj{"type": "string", "pattern": `^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$`}
	case reflect.TypeFor[PortRange]():
		return obj{"oneOf": []any{
			obj{"type": "integer", "minimum": 1, "maximum": 65535},
			obj{"type": "string", "pattern": `^[0-9]{1,5}(-[0-9]{1,5})?$`},
		}}
	case reflect.TypeFor[Window]():
		return obj{"type": "string", "pattern": `^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$`}
	case reflect.TypeFor[PublicKey]():
		return obj{"type": "string", "pattern": `^[A-Za-z0-9+/]{43}=$`}
	}
	switch t.Kind() {
	case reflect.Struct:
		props := obj{}
		var required []string
		for _, f := range structFields(t).list {
			sf := t.Field(f.index)
			p := schemaOf(sf.Type)
			if f.doc != "" {
				p["description"] = f.doc
			}
			if f.hasDef {
				p["default"] = defaultJSON(sf.Type, f.def)
			}
			if f.max > 0 {
				p["maxItems"] = f.max
			}
			props[f.key] = p
			if f.required {
				required = append(required, f.key)
			}
		}
		s := obj{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	case reflect.Slice:
		return obj{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Int:
		return obj{"type": "integer"}
	case reflect.Bool:
		return obj{"type": "boolean"}
	}
	panic("config: no schema for " + t.String())
}

// defaultJSON renders a default tag as the JSON value an editor shows.
func defaultJSON(t reflect.Type, def string) any {
	if t.Kind() == reflect.Slice && t != reflect.TypeFor[netip.Prefix]() {
		var out []any
		for _, p := range strings.Split(def, ",") {
			out = append(out, defaultJSON(t.Elem(), strings.TrimSpace(p)))
		}
		return out
	}
	switch t.Kind() {
	case reflect.Int:
		n, _ := strconv.Atoi(def)
		return n
	case reflect.Bool:
		b, _ := strconv.ParseBool(def)
		return b
	}
	return def
}
