package interrupt

import "fmt"

// Table is a table's declared size, in entries.
type Table struct {
	Min    uint32
	Max    uint32
	HasMax bool
}

// Tables returns the tables of a module, imported then defined, in their
// index order: what the rewrite's grow_check calls name by index.
func Tables(wasm []byte) ([]Table, error) {
	if len(wasm) < 8 {
		return nil, errTruncated
	}
	secs, err := sections(wasm)
	if err != nil {
		return nil, err
	}
	var tables []Table
	if s := find(secs, secImport); s != nil {
		r := reader{b: s.payload}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("import section: %w", err)
		}
		for range n {
			if _, err := r.name(); err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			if _, err := r.name(); err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			kind, err := r.byte()
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			switch kind {
			case 0x00:
				_, err = r.u32()
			case 0x01:
				var t Table
				if err = r.valType(); err == nil {
					t, err = r.tableLimits()
				}
				tables = append(tables, t)
			case 0x02:
				err = r.limits()
			case 0x03:
				if err = r.valType(); err == nil {
					_, err = r.byte()
				}
			default:
				err = fmt.Errorf("unknown import kind 0x%02x", kind)
			}
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
		}
	}
	if s := find(secs, secTable); s != nil {
		r := reader{b: s.payload}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("table section: %w", err)
		}
		for range n {
			t, init, err := r.tableType()
			if err == nil && init {
				err = r.skipExpr()
			}
			if err != nil {
				return nil, fmt.Errorf("table section: %w", err)
			}
			tables = append(tables, t)
		}
	}
	return tables, nil
}

// tableLimits reads a table's limits, which are u32 (64-bit tables are
// refused).
func (r *reader) tableLimits() (Table, error) {
	flags, err := r.byte()
	if err != nil {
		return Table{}, err
	}
	if flags > 1 {
		return Table{}, fmt.Errorf("unsupported table limits flags 0x%02x", flags)
	}
	var t Table
	if t.Min, err = r.u32(); err != nil {
		return Table{}, err
	}
	if flags == 1 {
		t.HasMax = true
		if t.Max, err = r.u32(); err != nil {
			return Table{}, err
		}
	}
	return t, nil
}
