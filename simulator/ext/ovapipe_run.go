// ovapipe's additions to the govmomi simulator. These files are copied next to Debian's
// simulator package sources at build time (never into Debian's tree) so that they can add
// methods to the simulator's managed object types.

package simulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// OvapipeOptions are ovapipe-vcsim's command line flags.
type OvapipeOptions struct {
	VCVersion        string
	ESXVersion       string
	GPUs             []string
	NoDefaultGPU     bool
	InstallerVM      string
	InstallerDisk    string
	InstallerSeconds float64
	Port             int
	InfoFile         string
	Username         string
	Password         string
	StrictVMX        bool
	RefusePassthru   string
	Datacenters      int
	Clusters         int // per datacenter
	ClusterHosts     int // per cluster
	Hosts            int // standalone, per datacenter
}

// OvapipeRun builds the inventory, serves it until SIGINT/SIGTERM and cleans up.
func OvapipeRun(opts OvapipeOptions) error {
	started := time.Now()
	if err := ovapipeCheckLeaseTimeout(); err != nil {
		return err
	}
	gpus, err := ovapipeGPUSpecs(opts.GPUs, !opts.NoDefaultGPU)
	if err != nil {
		return err
	}
	if err := ovapipeSetVersions(opts.VCVersion, opts.ESXVersion); err != nil {
		return err
	}
	if err := OvapipeSetRefusePassthru(opts.RefusePassthru); err != nil {
		return err
	}
	if opts.InstallerVM != "" {
		if _, err := filepath.Match(opts.InstallerVM, ""); err != nil {
			return fmt.Errorf("--installer-vm %q: %s", opts.InstallerVM, err)
		}
		if opts.InstallerDisk == "" {
			return fmt.Errorf("--installer-vm needs --installer-disk")
		}
		if _, err := os.Stat(opts.InstallerDisk); err != nil {
			return fmt.Errorf("--installer-disk: %s", err)
		}
	}

	ovapipeStrictVMX = opts.StrictVMX
	model := VPX()
	model.Datacenter = opts.Datacenters
	model.Cluster = opts.Clusters
	model.ClusterHost = opts.ClusterHosts
	model.Host = opts.Hosts
	if err := model.Create(); err != nil {
		return fmt.Errorf("creating the inventory: %s", err)
	}
	defer model.Remove()

	if err := ovapipeAddGPUs(gpus); err != nil {
		return err
	}
	ovapipeReplaceEnvironmentBrowsers()
	ovapipeReplaceOvfManager()
	if opts.InstallerVM != "" {
		Map.AddHandler(newOvapipeInstaller(opts.InstallerVM, opts.InstallerDisk, opts.InstallerSeconds))
	}

	cert, thumbprint, err := ovapipeCertificate()
	if err != nil {
		return err
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ovapipeLogin = url.UserPassword(opts.Username, opts.Password)
	model.Service.Listen = &url.URL{
		Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(opts.Port)),
		User: ovapipeLogin,
	}
	model.Service.ServeMux = http.NewServeMux()
	model.Service.RegisterEndpoints = true // vapi/simulator: the content library under /rest
	model.Service.ServeMux.HandleFunc(ovapipeTypedPath, ovapipeServeTyped)
	server := model.Service.NewServer()
	ovapipeService = model.Service
	// No server.Close() at exit: it waits for idle client connections; exiting closes them.
	// Debian's /nfc/ handler discards uploads; no client has the address yet, so the
	// handler can still be wrapped safely.
	server.Config.Handler = ovapipeGuardHandler(ovapipeLibraryHandler(ovapipeNFCHandler(server.Config.Handler)))

	info := map[string]interface{}{
		"VSPHERE_SERVER":         server.URL.Host,
		"VSPHERE_USERNAME":       opts.Username,
		"VSPHERE_PASSWORD":       opts.Password,
		"VSPHERE_TLS_THUMBPRINT": thumbprint,
		"url":                    "https://" + server.URL.Host + "/sdk",
		"pid":                    os.Getpid(),
		"vc_version":             opts.VCVersion,
		"esx_version":            opts.ESXVersion,
		"datacenters":            opts.Datacenters,
		"startup_seconds":        time.Since(started).Seconds(),
	}
	for _, key := range []string{"VSPHERE_SERVER", "VSPHERE_USERNAME", "VSPHERE_PASSWORD", "VSPHERE_TLS_THUMBPRINT"} {
		if key == "VSPHERE_PASSWORD" && opts.InfoFile != "" {
			continue // stdout is a log then; the password is in the (0600) info file
		}
		fmt.Printf("export %s=%s\n", key, info[key])
	}
	fmt.Printf("# govmomi simulator %s (vCenter %s, ESXi %s) ready in %.2fs\n",
		info["url"], opts.VCVersion, opts.ESXVersion, info["startup_seconds"])
	if opts.InfoFile != "" {
		if err := ovapipeWriteJSON(opts.InfoFile, info); err != nil {
			return err
		}
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	got := <-stop
	log.Printf("%s: stopping", got)
	return nil
}

// ovapipeWriteJSON writes to a temporary name and renames, so readers never see half a file.
func ovapipeWriteJSON(path string, value interface{}) error {
	data, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ovapipeCertificate makes a fresh self-signed certificate for 127.0.0.1/localhost, so each
// simulator has its own thumbprint, and returns it with its SHA-1 thumbprint (AA:BB:...).
func ovapipeCertificate() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"ovapipe simulator"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha1.Sum(der)
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return cert, strings.Join(hexes, ":"), nil
}
