//! Time-series functions under the names users of peers know: `time_bucket` (an alias of
//! `date_bin`) and TimescaleDB's `first(value, time)` and `last(value, time)`
//! ([`crate::first_last`]).

use datafusion::functions::datetime::date_bin;
use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::SessionContext;

use crate::first_last::{FirstLast, Which};

/// Registers isobar's functions on `context`.
pub(crate) fn register(context: &SessionContext) {
    context.register_udf(date_bin().as_ref().clone().with_aliases(["time_bucket"]));
    context.register_udaf(AggregateUDF::from(FirstLast::new(Which::First)));
    context.register_udaf(AggregateUDF::from(FirstLast::new(Which::Last)));
}
