//! Rows given in columns ([`Columns`]): the first row of each shape (its tag set and which
//! fields it has, of which types) is checked and resolved as a point would be, adding columns
//! and its series; later rows of that shape reuse the outcome, so a batch of many rows of few
//! series costs a few name and series lookups rather than some per row. What is written and
//! what is refused, and why, is what the same rows as points would give.

use crate::catalog::Op;
use crate::config::StorageConfig;
use crate::model::{ColumnId, Columns, FieldValue, SeriesId};
use crate::schema::{PointLimits, TableSchema};
use crate::wal::Row;

use super::Registry;

/// One shape of row of one tag set, and what its rows resolve to.
struct Shape {
    /// Per field column of the batch: the type code of the row's value, 0 for none.
    codes: Vec<u8>,
    /// The series and, sorted by column id, each present field's index in the batch and
    /// column; or why rows of this shape are refused.
    resolved: Result<(SeriesId, Vec<(usize, ColumnId)>), String>,
}

/// Where the rows of a batch's columns go.
pub(crate) struct Out<'a, R: FnMut(usize, String)> {
    pub(crate) rows: &'a mut Vec<Row>,
    pub(crate) reject: R,
}

impl Registry {
    /// Resolves the rows of `columns` against `schema`, adding columns and series as points
    /// would; each row is pushed to `out.rows` or refused through `out.reject` with the reason
    /// a point would get. Returns whether the schema changed.
    pub(super) fn rows_of_columns<R: FnMut(usize, String)>(
        &mut self,
        schema: &mut TableSchema,
        columns: &Columns,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
        refuse_time: impl Fn(i64) -> Option<String>,
        mut out: Out<'_, R>,
    ) -> bool {
        let limits = &config.point_limits();
        let mut changed = false;
        let fields = columns.fields();
        let mut shapes: Vec<Vec<Shape>> = (0..columns.tag_sets().len()).map(|_| Vec::new()).collect();
        let mut codes = Vec::with_capacity(fields.len());
        for row in 0..columns.len() {
            if let Some(reason) = refuse_time(columns.time(row)) {
                (out.reject)(row, reason);
                continue;
            }
            codes.clear();
            codes.extend(fields.iter().map(|(_, values)| shape_code(values[row].as_ref(), limits)));
            let tag_set = columns.row_tag_set(row);
            // A row with a string over the limit is refused with its length, so it is
            // resolved on its own, as a point.
            let single;
            let resolved = if codes.contains(&LONG_STRING) {
                single = self.resolve_shape(schema, columns, row, limits, config, ops, &mut changed);
                &single
            } else {
                let shape = match shapes[tag_set].iter().position(|s| s.codes == codes) {
                    Some(i) => i,
                    None => {
                        let resolved = self.resolve_shape(schema, columns, row, limits, config, ops, &mut changed);
                        shapes[tag_set].push(Shape { codes: codes.clone(), resolved });
                        shapes[tag_set].len() - 1
                    }
                };
                &shapes[tag_set][shape].resolved
            };
            let (series, ids) = match resolved {
                Ok(resolved) => resolved,
                Err(reason) => {
                    (out.reject)(row, reason.clone());
                    continue;
                }
            };
            let mut values = Vec::with_capacity(ids.len());
            for (field, id) in ids {
                if let Some(value) = &fields[*field].1[row] {
                    values.push((*id, value.clone()));
                }
            }
            out.rows.push(Row { series: *series, time: columns.time(row), fields: values.into_boxed_slice() });
        }
        changed
    }

    /// Checks and resolves row `row` of `columns` as a point: its series and fields, adding
    /// columns and the series when they are new.
    #[allow(clippy::too_many_arguments)]
    fn resolve_shape(
        &mut self,
        schema: &mut TableSchema,
        columns: &Columns,
        row: usize,
        limits: &PointLimits,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
        changed: &mut bool,
    ) -> Result<(SeriesId, Vec<(usize, ColumnId)>), String> {
        let point = columns.point(row);
        let (resolved, new_columns) = schema.resolve(&point, limits)?;
        let series = self.series_for(schema.id, resolved.tags, config, ops)?;
        *changed |= new_columns;
        let mut ids = Vec::with_capacity(point.fields.len());
        for (field, (name, values)) in columns.fields().iter().enumerate() {
            if values[row].is_some() {
                let column =
                    schema.column(name).ok_or_else(|| format!("table {}: column {name} missing after it was added", schema.name))?;
                ids.push((field, column.id));
            }
        }
        ids.sort_by_key(|(_, id)| *id);
        Ok((series, ids))
    }
}

/// A row's value's part in its shape: its type's code, [`LONG_STRING`] for a string over the
/// limit, 0 for none.
fn shape_code(value: Option<&FieldValue>, limits: &PointLimits) -> u8 {
    match value {
        None => 0,
        Some(FieldValue::String(s)) if s.len() > limits.string_bytes_max => LONG_STRING,
        Some(value) => value.field_type().code(),
    }
}

/// The shape code of a string over the limit (type codes are 1 to 4).
const LONG_STRING: u8 = u8::MAX;
