//! Time-series functions under the names users of peers know: `time_bucket` (an alias of
//! `date_bin`) and TimescaleDB's `first(value, time)` and `last(value, time)`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::functions::datetime::date_bin;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;

/// Registers isobar's functions on `context`.
pub(crate) fn register(context: &SessionContext) {
    context.register_udf(date_bin().as_ref().clone().with_aliases(["time_bucket"]));
    context.register_udaf(AggregateUDF::from(FirstLast::new(Which::First)));
    context.register_udaf(AggregateUDF::from(FirstLast::new(Which::Last)));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    First,
    Last,
}

/// `first(value, time)`: the value at the earliest time; `last`: at the latest. Rows with a
/// null time are skipped; the earliest row seen wins a tie.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FirstLast {
    which: Which,
    signature: Signature,
}

impl FirstLast {
    fn new(which: Which) -> Self {
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
        if let Some((row, t)) = pick {
            if self.which.beats(t, self.best.as_ref().map(|(b, _)| *b)) {
                self.best = Some((t, ScalarValue::try_from_array(values, row)?));
            }
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
