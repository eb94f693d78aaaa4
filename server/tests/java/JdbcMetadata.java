// pgJDBC's DatabaseMetaData against a started isobar, as DBeaver, Metabase, Superset and
// Tableau reflect tables. Run by server/tests/jdbc.rs as a single-file program:
//   java -cp /usr/share/java/postgresql.jar JdbcMetadata.java <port> <table>
// Prints one line per fact, for the test to compare with psql's \d:
//   product <name> <version>
//   table <schema> <name> <type>
//   column <name> <type name> <java.sql.Types code> <ordinal> <nullable>
//   key <column> <sequence>
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;

public class JdbcMetadata {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/isobar?user=isobar";
        String table = args[1];
        try (Connection conn = DriverManager.getConnection(url)) {
            DatabaseMetaData md = conn.getMetaData();
            System.out.println("product " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    System.out.println("table " + rs.getString("TABLE_SCHEM") + " " + rs.getString("TABLE_NAME") + " " + rs.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet rs = md.getColumns(null, "public", table, "%")) {
                while (rs.next()) {
                    System.out.println("column " + rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME").replace(' ', '_') + " "
                        + rs.getInt("DATA_TYPE") + " " + rs.getInt("ORDINAL_POSITION") + " " + rs.getString("IS_NULLABLE"));
                }
            }
            try (ResultSet rs = md.getPrimaryKeys(null, "public", table)) {
                while (rs.next()) {
                    System.out.println("key " + rs.getString("COLUMN_NAME") + " " + rs.getInt("KEY_SEQ"));
                }
            }
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) {
                    System.out.println("schema " + rs.getString("TABLE_SCHEM"));
                }
            }
        }
    }
}
