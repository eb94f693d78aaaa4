//! Rows given in columns ([`Columns`]). A row is written without checking it as a point when
//! its tag set is an existing series of the table and its fields are existing field columns
//! of its values' types: a tag set is looked up once per batch, and each shape of fields (which
//! fields a row has, of which types) once per batch, so a batch of many rows of few series,
//! or of many series all known already, costs a few lookups per series rather than a point's
//! checks per row. A tag set a writer hands in the same `Arc` write after write (line
//! protocol's parsed keys) is found by that `Arc`'s address, without a lookup by its tags
//! ([`TagSetSeries`]). Any other row is checked and resolved as a point would be, adding
//! columns and its series. What is written and what is refused, and why, is what the same rows
//! as points would give.

use std::sync::Arc;

use crate::batch::RowBatch;
use crate::catalog::Op;
use crate::config::StorageConfig;
use crate::fxhash::FxHashMap;
use crate::model::{ColumnId, Columns, FieldValue, SeriesId, TableId};
use crate::schema::{ColumnKind, PointLimits, TableSchema};

use super::Registry;

/// A shape of a row's fields: per field column of the batch, the type code of the row's value
/// (0 for none), and when every field is an existing field column of that type, each present
/// field's index in the batch and column, sorted by column id.
struct FieldShape {
    codes: Vec<u8>,
    ids: Option<FieldIds>,
}

/// The fields of a row: each one's index among the batch's field columns, and its column.
type FieldIds = Vec<(usize, ColumnId)>;

/// The series of tag sets seen before, by table and the address of the tag set's `Arc`, for a
/// writer that hands in the same `Arc` for a series in every write. Each entry holds its `Arc`,
/// so no other tag set can take its address while the entry lives. A series, once made, keeps
/// its id and tags, so an entry stays true; at [`TAG_SETS_CACHED_MAX`] entries it starts over.
#[derive(Debug, Default)]
pub(crate) struct TagSetSeries(FxHashMap<(TableId, usize), (TagSet, SeriesId)>);

/// A tag set as writers share it between writes.
type TagSet = Arc<[(String, String)]>;

/// Entries a [`TagSetSeries`] holds at most.
const TAG_SETS_CACHED_MAX: usize = 1 << 16;

impl TagSetSeries {
    fn key(table: TableId, tags: &TagSet) -> (TableId, usize) {
        (table, Arc::as_ptr(tags).cast::<()>() as usize)
    }

    fn get(&self, table: TableId, tags: &TagSet) -> Option<SeriesId> {
        self.0.get(&Self::key(table, tags)).map(|(_, series)| *series)
    }

    /// Forgets the tag sets of a dropped table.
    pub(super) fn remove_table(&mut self, table: TableId) {
        self.0.retain(|(t, _), _| *t != table);
    }

    fn insert(&mut self, table: TableId, tags: &TagSet, series: SeriesId) {
        if self.0.len() >= TAG_SETS_CACHED_MAX {
            self.0.clear();
        }
        self.0.insert(Self::key(table, tags), (Arc::clone(tags), series));
    }
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
        // Per tag set: not looked up yet, or its series when it has one.
        let mut series_of: Vec<Option<Option<SeriesId>>> = vec![None; columns.tag_sets().len()];
        let mut shapes: Vec<FieldShape> = Vec::new();
        let mut codes = Vec::with_capacity(fields.len());
        for row in 0..columns.len() {
            if let Some(reason) = refuse_time(columns.time(row)) {
                (out.reject)(row, reason);
                continue;
            }
            codes.clear();
            codes.extend(fields.iter().map(|(_, values)| shape_code(values[row].as_ref(), limits)));
            let tag_set = columns.row_tag_set(row);
            let series = *series_of[tag_set].get_or_insert_with(|| self.known_tag_set(schema, &columns.tag_sets()[tag_set], limits));
            let shape = match shapes.iter().position(|s| s.codes == codes) {
                Some(i) => i,
                None => {
                    shapes.push(FieldShape { ids: known_fields(schema, columns, &codes, limits), codes: codes.clone() });
                    shapes.len() - 1
                }
            };
            let resolved;
            let (series, ids) = match (series, &shapes[shape].ids) {
                (Some(series), Some(ids)) => (series, ids),
                // Checked as a point: the first row of a new series, a row adding columns, and
                // a row refused (rows between may have changed the schema, and so the reason).
                _ => match self.resolve_row(schema, columns, row, limits, config, ops) {
                    Err(reason) => {
                        (out.reject)(row, reason);
                        continue;
                    }
                    Ok((series, ids, new_columns)) => {
                        if new_columns {
                            changed = true;
                            shapes.clear();
                        }
                        series_of[tag_set] = Some(Some(series));
                        self.tag_set_series.insert(schema.id, &columns.tag_sets()[tag_set], series);
                        resolved = ids;
                        (series, &resolved)
                    }
                },
            };
            let values = ids.iter().filter_map(|(field, id)| Some((*id, fields[*field].1[row].clone()?)));
            out.rows.push(series, columns.time(row), values);
        }
        changed
    }

    /// The existing series of `schema`'s table with the tag set `tags`, from the tag sets seen
    /// before when it is one of them.
    fn known_tag_set(&mut self, schema: &TableSchema, tags: &TagSet, limits: &PointLimits) -> Option<SeriesId> {
        if let Some(series) = self.tag_set_series.get(schema.id, tags) {
            return Some(series);
        }
        let series = self.known_series(schema, tags, limits)?;
        self.tag_set_series.insert(schema.id, tags, series);
        Some(series)
    }

    /// The existing series of `schema`'s table with `tags`, when every tag is a tag column
    /// and the tags are within the limits (which a restart may have lowered).
    fn known_series(&self, schema: &TableSchema, tags: &[(String, String)], limits: &PointLimits) -> Option<SeriesId> {
        if tags.len() > limits.tags_per_series_max {
            return None;
        }
        let mut resolved = Vec::with_capacity(tags.len());
        for (name, value) in tags {
            if name.len() > limits.name_bytes_max || value.len() > limits.string_bytes_max {
                return None;
            }
            let column = schema.column(name).filter(|c| c.kind == ColumnKind::Tag)?;
            resolved.push((column.id, value.as_str()));
        }
        resolved.sort_unstable_by_key(|(id, _)| *id);
        self.find_series(schema.id, &resolved)
    }

    /// Checks and resolves row `row` of `columns` as a point: its series and fields (sorted by
    /// column id), adding columns and the series when they are new, and whether columns were
    /// added.
    fn resolve_row(
        &mut self,
        schema: &mut TableSchema,
        columns: &Columns,
        row: usize,
        limits: &PointLimits,
        config: &StorageConfig,
        ops: &mut Vec<Op>,
    ) -> Result<(SeriesId, FieldIds, bool), String> {
        let point = columns.point(row);
        let (resolved, new_columns) = schema.resolve(&point, limits)?;
        let series = self.series_for(schema.id, resolved.tags, config, ops)?;
        let mut ids = Vec::with_capacity(point.fields.len());
        for (field, (name, values)) in columns.fields().iter().enumerate() {
            if values[row].is_some() {
                let column =
                    schema.column(name).ok_or_else(|| format!("table {}: column {name} missing after it was added", schema.name))?;
                ids.push((field, column.id));
            }
        }
        ids.sort_by_key(|(_, id)| *id);
        Ok((series, ids, new_columns))
    }
}

/// The columns of the fields of a row of shape `codes`, sorted by column id, when it has a
/// field and each is an existing field column of its value's type, its name within the limit.
fn known_fields(schema: &TableSchema, columns: &Columns, codes: &[u8], limits: &PointLimits) -> Option<FieldIds> {
    let mut ids = Vec::new();
    for (field, (&code, (name, _))) in codes.iter().zip(columns.fields()).enumerate() {
        if code == 0 {
            continue;
        }
        if name.len() > limits.name_bytes_max {
            return None;
        }
        let column = schema.column(name)?;
        match column.kind {
            ColumnKind::Field(t) if t.code() == code => ids.push((field, column.id)),
            _ => return None,
        }
    }
    ids.sort_unstable_by_key(|(_, id)| *id);
    (!ids.is_empty()).then_some(ids)
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

/// The shape code of a string over the limit (type codes are 1 to 4), which no field column
/// matches: such a row is refused as a point, with its length.
const LONG_STRING: u8 = u8::MAX;
