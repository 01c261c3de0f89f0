import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * Local Neo4j Community server for development and tests: the embedded database with its Bolt
 * connector, configured from a neo4j.conf file. Run as a single-file source program:
 *
 *   RMBERT_INFRA_NEO4J_PASSWORD=... java [flags] -cp CLASSPATH infra/neo4j/Launcher.java \
 *       --home DIR --config neo4j.conf --ready-file FILE
 *
 * The embedded API has no "initial password" setting, so the password of the built-in user
 * `neo4j` is set through the system database once the DBMS is up (and remembered, as a digest, so
 * that restarts skip it). Clients would be refused while that is pending, so readiness is
 * announced by writing --ready-file only afterwards. SIGTERM runs a clean shutdown (checkpoint,
 * stores closed) through a shutdown hook.
 */
public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) {
        long started = System.nanoTime();
        Map<String, String> options;
        try {
            options = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("neo4j launcher: " + e.getMessage());
            System.err.println("usage: java -cp CP Launcher.java --home DIR --config FILE --ready-file FILE");
            System.exit(2);
            return;
        }
        Path home = Path.of(options.get("home")).toAbsolutePath();
        Path config = Path.of(options.get("config")).toAbsolutePath();
        Path readyFile = Path.of(options.get("ready-file")).toAbsolutePath();
        String password = System.getenv("RMBERT_INFRA_NEO4J_PASSWORD");
        if (password == null || password.length() < 8) {
            System.err.println("neo4j launcher: set RMBERT_INFRA_NEO4J_PASSWORD (at least 8 characters, Neo4j's minimum)");
            System.exit(2);
            return;
        }

        try {
            Files.deleteIfExists(readyFile);
            Files.createDirectories(home);
        } catch (IOException e) {
            fail("cannot prepare " + home + ": " + e, e);
        }

        log("starting Neo4j in " + home + " with " + config);
        DatabaseManagementService dbms;
        try {
            dbms = new DatabaseManagementServiceBuilder(home)
                    .loadPropertiesFromFile(config)
                    .setUserLogProvider(new Log4jLogProvider(System.out, Level.INFO))
                    .build();
        } catch (RuntimeException e) {
            fail("Neo4j did not start: " + e, e);
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            log("stopping Neo4j");
            try {
                Files.deleteIfExists(readyFile);
            } catch (IOException ignored) {
                // the next start deletes it too
            }
            dbms.shutdown();
            log("Neo4j stopped");
            stopped.countDown();
        }, "rmbert-neo4j-shutdown"));

        try {
            setPassword(home, dbms.database("system"), password);
        } catch (RuntimeException | IOException e) {
            dbms.shutdown();
            fail("could not set the password of user neo4j: " + e, e);
        }

        try {
            Path tmp = readyFile.resolveSibling(readyFile.getFileName() + ".tmp");
            Files.writeString(tmp, ProcessHandle.current().pid() + "\n");
            Files.move(tmp, readyFile, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            fail("cannot write " + readyFile + ": " + e, e);
        }
        log(String.format("Neo4j ready in %.1f s (JVM uptime %.1f s)",
                (System.nanoTime() - started) / 1e9,
                ProcessHandle.current().info().startInstant()
                        .map(t -> (Instant.now().toEpochMilli() - t.toEpochMilli()) / 1e3).orElse(-1.0)));

        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Sets the password unless this store already has it: compiling the system command costs
     * seconds on a small machine, so a marker (a digest, not the password) remembers it.
     */
    private static void setPassword(Path home, GraphDatabaseService system, String password) throws IOException {
        Path marker = home.resolve("rmbert-password.sha256");
        String digest = sha256(password);
        if (Files.exists(marker) && Files.readString(marker).trim().equals(digest)) {
            log("password of user neo4j already set");
            return;
        }
        try {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
            log("password of user neo4j set");
        } catch (QueryExecutionException e) {
            // A store whose marker was lost: Neo4j refuses to "change" a password to itself.
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                throw e;
            }
            log("password of user neo4j already set");
        }
        Files.writeString(marker, digest + "\n");
    }

    private static String sha256(String text) {
        try {
            byte[] hash = MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(hash);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (!arg.startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("unexpected argument " + arg);
            }
            options.put(arg.substring(2), args[++i]);
        }
        for (String required : new String[] {"home", "config", "ready-file"}) {
            if (!options.containsKey(required)) {
                throw new IllegalArgumentException("missing --" + required);
            }
        }
        return options;
    }

    private static void log(String message) {
        System.out.println(Instant.now() + " [rmbert-neo4j] " + message);
        System.out.flush();
    }

    private static void fail(String message, Throwable cause) {
        System.err.println(Instant.now() + " [rmbert-neo4j] " + message);
        cause.printStackTrace(System.err);
        System.err.flush();
        // halt, not exit: the shutdown hook would wait on a DBMS that never finished starting
        Runtime.getRuntime().halt(1);
    }
}
