//! Rows given in columns ([`Columns`]): the first row of each shape (its tag set and which
//! fields it has, of which types) is checked and resolved as a point would be, adding columns
//! and its series; later rows of that shape reuse its resolution, so a batch of many rows of
//! few series costs a few name and series lookups rather than some per row. Refused rows are
//! checked one by one (other rows may change the schema, and with it the reason). What is
//! written and what is refused, and why, is what the same rows as points would give.

use crate::batch::RowBatch;
use crate::catalog::Op;
use crate::config::StorageConfig;
use crate::model::{ColumnId, Columns, FieldValue, SeriesId};
use crate::schema::{PointLimits, TableSchema};

use super::Registry;

/// One shape of row of one tag set that resolved, and what its rows resolve to.
struct Shape {
    /// Per field column of the batch: the type code of the row's value, 0 for none.
    codes: Vec<u8>,
    /// The series of its rows.
    series: SeriesId,
    /// Sorted by column id, each present field's index in the batch and column.
    ids: Vec<(usize, ColumnId)>,
}

/// Where the rows of a batch's columns go.
pub(crate) struct Out<'a, R: FnMut(usize, String)> {
    pub(crate) rows: &'a mut RowBatch,
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
            // resolved on its own, as a point; so is a row of a shape not resolved yet or
            // refused before (rows between may have changed the schema, and so the reason).
            let cached = match codes.contains(&LONG_STRING) {
                true => None,
                false => shapes[tag_set].iter().position(|s| s.codes == codes),
            };
            let single;
            let (series, ids) = match cached {
                Some(i) => (shapes[tag_set][i].series, &shapes[tag_set][i].ids),
                None => match self.resolve_shape(schema, columns, row, limits, config, ops, &mut changed) {
                    Err(reason) => {
                        (out.reject)(row, reason);
                        continue;
                    }
                    Ok((series, ids)) if codes.contains(&LONG_STRING) => {
                        single = ids;
                        (series, &single)
                    }
                    Ok((series, ids)) => {
                        shapes[tag_set].push(Shape { codes: codes.clone(), series, ids });
                        let shape = &shapes[tag_set][shapes[tag_set].len() - 1];
                        (shape.series, &shape.ids)
                    }
                },
            };
            let values = ids.iter().filter_map(|(field, id)| Some((*id, fields[*field].1[row].clone()?)));
            out.rows.push(series, columns.time(row), values);
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
