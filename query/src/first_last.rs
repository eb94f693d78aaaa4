//! `first(value, time)` and `last(value, time)`: the value at the earliest or the latest time
//! of each group, as TimescaleDB names them. Grouped queries (the last reading of every
//! sensor) use a groups accumulator that keeps one time and one value per group, converting a
//! value only when a batch improves on its group.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Which {
    First,
    Last,
}

/// `first(value, time)`: the value at the earliest time; `last`: at the latest. Rows with a
/// null time are skipped; the earliest row seen wins a tie.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct FirstLast {
    which: Which,
    signature: Signature,
}

impl FirstLast {
    pub(crate) fn new(which: Which) -> Self {
        Self { which, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for FirstLast {
    fn name(&self) -> &str {
        match self.which {
            Which::First => "first",
            Which::Last => "last",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t) => Ok(t.clone()),
            None => exec_err!("{}(value, time) takes two arguments", self.name()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FirstLastAccumulator { which: self.which, data_type: args.return_field.data_type().clone(), best: None }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        let data_type = args.return_field.data_type().clone();
        let null = ScalarValue::try_from(&data_type)?;
        Ok(Box::new(FirstLastGroups { which: self.which, null, times: Vec::new(), values: Vec::new(), batch_rows: Vec::new() }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}_value", args.name), args.return_field.data_type().clone(), true)),
            Arc::new(Field::new(format!("{}_time", args.name), DataType::Int64, true)),
        ])
    }
}

#[derive(Debug)]
struct FirstLastAccumulator {
    which: Which,
    data_type: DataType,
    /// The best time so far and the value there.
    best: Option<(i64, ScalarValue)>,
}

impl Which {
    /// Whether a row at `time` beats the best so far.
    fn beats(self, time: i64, best: Option<i64>) -> bool {
        match (best, self) {
            (None, _) => true,
            (Some(best), Which::First) => time < best,
            (Some(best), Which::Last) => time > best,
        }
    }
}

impl FirstLastAccumulator {
    /// Considers every row of `values` at `times`.
    fn offer(&mut self, values: &ArrayRef, times: &ArrayRef) -> Result<()> {
        let times = cast(times, &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        let mut pick: Option<(usize, i64)> = None;
        for row in 0..times.len() {
            if times.is_null(row) {
                continue;
            }
            let t = times.value(row);
            if self.which.beats(t, pick.map(|(_, p)| p)) {
                pick = Some((row, t));
            }
        }
        if let Some((row, t)) = pick
            && self.which.beats(t, self.best.as_ref().map(|(b, _)| *b))
        {
            self.best = Some((t, ScalarValue::try_from_array(values, row)?));
        }
        Ok(())
    }
}

impl Accumulator for FirstLastAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [value, time] = values else { return exec_err!("first/last take (value, time)") };
        self.offer(value, time)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [value, time] = states else { return exec_err!("first/last state is (value, time)") };
        self.offer(value, time)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(match &self.best {
            Some((t, v)) => vec![v.clone(), ScalarValue::Int64(Some(*t))],
            None => vec![ScalarValue::try_from(&self.data_type)?, ScalarValue::Int64(None)],
        })
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match &self.best {
            Some((_, v)) => Ok(v.clone()),
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.best.as_ref().map_or(0, |(_, v)| v.size())
    }
}

/// `first`/`last` for every group of a grouped aggregation.
#[derive(Debug)]
struct FirstLastGroups {
    which: Which,
    /// The null of the value's type: the answer of a group with no timed row.
    null: ScalarValue,
    /// Per group, the best time so far.
    times: Vec<Option<i64>>,
    /// Per group, the value at that time.
    values: Vec<ScalarValue>,
    /// Per group, the row of the batch being offered that improves it, or [`NO_ROW`]: the
    /// value is converted once per batch, not at every improving row.
    batch_rows: Vec<usize>,
}

const NO_ROW: usize = usize::MAX;

impl FirstLastGroups {
    /// Considers every row of `values` at `times` for its group, skipping rows `filter`
    /// leaves out and rows with a null time.
    fn offer(
        &mut self,
        values: &ArrayRef,
        times: &ArrayRef,
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.times.resize(total_groups, None);
        self.values.resize(total_groups, self.null.clone());
        self.batch_rows.resize(total_groups, NO_ROW);
        let times = cast(times, &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        let mut improved = Vec::new();
        for (row, &group) in groups.iter().enumerate() {
            if times.is_null(row) || !filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                continue;
            }
            let t = times.value(row);
            if self.which.beats(t, self.times[group]) {
                self.times[group] = Some(t);
                if self.batch_rows[group] == NO_ROW {
                    improved.push(group);
                }
                self.batch_rows[group] = row;
            }
        }
        for group in improved {
            self.values[group] = ScalarValue::try_from_array(values, std::mem::replace(&mut self.batch_rows[group], NO_ROW))?;
        }
        Ok(())
    }
}

impl GroupsAccumulator for FirstLastGroups {
    fn update_batch(&mut self, values: &[ArrayRef], groups: &[usize], filter: Option<&BooleanArray>, total_groups: usize) -> Result<()> {
        let [value, time] = values else { return exec_err!("first/last take (value, time)") };
        self.offer(value, time, groups, filter, total_groups)
    }

    fn merge_batch(&mut self, states: &[ArrayRef], groups: &[usize], total_groups: usize) -> Result<()> {
        let [value, time] = states else { return exec_err!("first/last state is (value, time)") };
        self.offer(value, time, groups, None, total_groups)
    }

    fn convert_to_state(&self, values: &[ArrayRef], filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let [value, time] = values else { return exec_err!("first/last take (value, time)") };
        let times = cast(time, &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        // A row left out by the filter gets no time, so merging skips it.
        let kept = |row: usize| filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        let times: Int64Array = (0..times.len()).map(|row| (kept(row) && times.is_valid(row)).then(|| times.value(row))).collect();
        Ok(vec![Arc::clone(value), Arc::new(times)])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        emit_to.take_needed(&mut self.times);
        emit_to.take_needed(&mut self.batch_rows);
        ScalarValue::iter_to_array(emit_to.take_needed(&mut self.values))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        emit_to.take_needed(&mut self.batch_rows);
        let times: Int64Array = emit_to.take_needed(&mut self.times).into_iter().collect();
        let values = ScalarValue::iter_to_array(emit_to.take_needed(&mut self.values))?;
        Ok(vec![values, Arc::new(times)])
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.times.capacity() * size_of::<Option<i64>>()
            + self.batch_rows.capacity() * size_of::<usize>()
            + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }
}
